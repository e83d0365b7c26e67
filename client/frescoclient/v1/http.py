"""The HTTP layer every manager shares: one keystoneauth adapter, URLs, errors, paging."""

import re
import urllib.parse

from keystoneauth1 import exceptions as ksa_exc

from frescoclient import exceptions

# Safety net against a server whose `next` link never ends.
MAX_PAGES = 10000


def quote(segment):
    """Quotes one path segment (names may hold any character but '/')."""
    return urllib.parse.quote(str(segment), safe="")


class HTTPClient:
    """Sends requests to the Fresco v1 API through a keystoneauth ``Adapter``.

    The endpoint comes from the adapter (service catalog or endpoint override). It may be
    registered with or without the ``/v1`` suffix; both work.
    """

    def __init__(self, adapter):
        self.adapter = adapter
        self._base = None

    @property
    def base_url(self):
        if self._base is None:
            try:
                endpoint = self.adapter.get_endpoint()
            except (ksa_exc.EndpointNotFound, ksa_exc.MissingAuthPlugin) as exc:
                raise exceptions.ClientException(
                    "no endpoint for service type %r in the service catalog: %s"
                    % (self.adapter.service_type, exc)) from exc
            if not endpoint:
                raise exceptions.ClientException(
                    "no endpoint for service type %r: register one in keystone or pass "
                    "--os-function-endpoint" % self.adapter.service_type)
            endpoint = endpoint.rstrip("/")
            if not re.search(r"/v1(\.0)?$", endpoint):
                endpoint += "/v1"
            self._base = endpoint
        return self._base

    def url(self, path):
        if urllib.parse.urlparse(path).netloc:
            return path
        return self.base_url + "/" + path.lstrip("/")

    def request(self, method, path, ok=(200, 201, 202, 204), **kwargs):
        url = self.url(path)
        kwargs.setdefault("raise_exc", False)
        headers = kwargs.setdefault("headers", {})
        headers.setdefault("Accept", "application/json")
        try:
            resp = self.adapter.request(url, method, **kwargs)
        except ksa_exc.ConnectionError as exc:
            raise exceptions.ConnectionError(
                "cannot reach fresco at %s: %s" % (url, exc)) from exc
        if resp.status_code not in ok:
            raise exceptions.from_response(resp, method, url)
        return resp

    def get_json(self, path, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def list(self, path, key, params=None, limit=None):
        """Gets every item of a list, following `next` links, at most `limit` when given."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if limit is not None:
            if limit < 1:
                raise exceptions.ValidationError("limit must be a positive integer")
            params["limit"] = min(limit, 1000)
        items = []
        url = path
        seen = set()
        for _ in range(MAX_PAGES):
            body = self.get_json(url, params=params)
            items.extend(body.get(key, []))
            nxt = body.get("next")
            if not nxt or (limit is not None and len(items) >= limit):
                break
            if nxt in seen:
                raise exceptions.ClientException("the api returned the same next link twice: %s" % nxt)
            seen.add(nxt)
            # The next link carries the query string itself; a relative one is taken
            # against the endpoint's host.
            url, params = urllib.parse.urljoin(self.base_url, nxt), None
        if limit is not None:
            items = items[:limit]
        return items

"""Runtimes: the images functions run in (admin-managed)."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, is_uuid, list_params
from frescoclient.v1.http import quote

FIELDS = ("name", "image", "kind", "description", "is_public", "project_id", "status",
          "network", "memory_min_mb", "memory_max_mb", "timeout_max_s")


class RuntimeManager(Manager):
    path = "/runtimes"

    def list(self, **kwargs):
        params, limit = list_params(**kwargs)
        return self.http.list(self.path, "runtimes", params, limit)

    def get(self, runtime_id):
        return self.http.get_json("%s/%s" % (self.path, quote(runtime_id)))["runtime"]

    def find(self, name_or_id):
        """A runtime by id, or by name (the API takes only ids in the path)."""
        if is_uuid(name_or_id):
            return self.get(name_or_id)
        matches = [r for r in self.list() if r.get("name") == name_or_id]
        if not matches:
            raise exceptions.NotFound(404, "runtime '%s' could not be found" % name_or_id)
        if len(matches) > 1:
            raise exceptions.ClientException(
                "more than one runtime is named '%s'; use its id" % name_or_id)
        return matches[0]

    def find_id(self, name_or_id):
        if is_uuid(name_or_id):
            return name_or_id
        return self.find(name_or_id)["id"]

    def create(self, name, image, kind, **fields):
        body = drop_none(dict(fields, name=name, image=image, kind=kind))
        _check(body)
        return self.http.request("POST", self.path, json=body).json()["runtime"]

    def update(self, runtime, **fields):
        body = drop_none(fields)
        _check(body)
        body.pop("project_id", None)
        if not body:
            raise exceptions.ValidationError("nothing to update")
        path = "%s/%s" % (self.path, quote(self.find_id(runtime)))
        return self.http.request("PATCH", path, json=body).json()["runtime"]

    def delete(self, runtime):
        self.http.request("DELETE", "%s/%s" % (self.path, quote(self.find_id(runtime))))


def _check(body):
    unknown = set(body) - set(FIELDS)
    if unknown:
        raise exceptions.ValidationError("unknown runtime field(s): %s" % ", ".join(sorted(unknown)))
    if "kind" in body and body["kind"] not in ("python", "provided"):
        raise exceptions.ValidationError("kind must be python or provided")

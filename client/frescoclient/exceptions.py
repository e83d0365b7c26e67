"""Errors raised by the Fresco SDK.

Every error the API returns becomes a :class:`HttpError` (or one of its subclasses, chosen by
status code) whose ``str()`` is one readable line: the API's own message, the status code and
the request id the operator needs to find the call in the service's logs.
"""

import json


class ClientException(Exception):
    """Base of every error this package raises."""


class ValidationError(ClientException):
    """Bad input caught before any request was sent."""


class ConnectionError(ClientException):  # noqa: A001 - the SDK's own name, not the builtin
    """The API could not be reached."""


class HttpError(ClientException):
    """The API answered with an error status."""

    status_code = None

    def __init__(self, status_code, message, title=None, request_id=None, method=None,
                 url=None, retry_after=None):
        self.status_code = status_code
        self.message = message
        self.title = title
        self.request_id = request_id
        self.method = method
        self.url = url
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self):
        text = "%s (HTTP %s)" % (self.message, self.status_code)
        if self.retry_after:
            text += " (retry after %ss)" % self.retry_after
        if self.request_id:
            text += " (Request-ID: %s)" % self.request_id
        return text


class BadRequest(HttpError):
    status_code = 400


class Unauthorized(HttpError):
    status_code = 401


class Forbidden(HttpError):
    status_code = 403


class NotFound(HttpError):
    status_code = 404


class Conflict(HttpError):
    status_code = 409


class PayloadTooLarge(HttpError):
    status_code = 413


class UnsupportedMediaType(HttpError):
    status_code = 415


class TooManyRequests(HttpError):
    status_code = 429


class ServiceUnavailable(HttpError):
    status_code = 503


_BY_STATUS = {cls.status_code: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
    UnsupportedMediaType, TooManyRequests, ServiceUnavailable)}


def _error_message(response):
    """The most useful one-line message in an error response body."""
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err.get("message") or err.get("title"), err.get("title")
        # Other OpenStack shapes: {"badRequest": {"message": ...}}, {"message": ...}
        for value in body.values():
            if isinstance(value, dict) and value.get("message"):
                return value["message"], None
        if isinstance(body.get("message"), str):
            return body["message"], None
    line = " ".join(text.split())
    if len(line) > 200:
        line = line[:200] + "..."
    return line or (response.reason or "").lower() or "error", None


def from_response(response, method=None, url=None):
    """Builds the exception matching an error response."""
    message, title = _error_message(response)
    cls = _BY_STATUS.get(response.status_code, HttpError)
    return cls(
        response.status_code,
        message,
        title=title,
        request_id=response.headers.get("x-openstack-request-id"),
        method=method,
        url=url,
        retry_after=response.headers.get("Retry-After"),
    )

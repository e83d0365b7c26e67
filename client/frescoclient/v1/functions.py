"""Functions: CRUD, code upload and download, invocation."""

import json

from urllib3.filepost import encode_multipart_formdata

from frescoclient import exceptions
from frescoclient import packaging
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote

# Metadata fields a function takes on create and update.
FIELDS = ("name", "runtime", "image", "handler", "memory_mb", "timeout_s", "environment",
          "description")


class InvokeResult:
    """What a synchronous invocation returned, or the execution an async one queued."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content
        self.content_type = response.headers.get("Content-Type", "")
        self.execution = None
        if response.status_code == 202:
            self.execution = response.json().get("execution", {})
            self.execution_id = self.execution.get("id")
            self.status = self.execution.get("status")
            self.duration_ms = None
        else:
            self.execution_id = response.headers.get("X-Execution-Id")
            self.status = response.headers.get("X-Execution-Status")
            duration = response.headers.get("X-Execution-Duration-Ms")
            self.duration_ms = _number(duration)
        self.request_id = response.headers.get("x-openstack-request-id")

    @property
    def is_async(self):
        return self.execution is not None

    @property
    def result(self):
        """The function's result, parsed when it is JSON, else the text."""
        text = self.content.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text


def _number(text):
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _multipart(metadata, package, fmt):
    fields = []
    if metadata is not None:
        fields.append(("metadata", ("metadata.json", json.dumps(metadata).encode(), "application/json")))
    if package is not None:
        name = "package.zip" if fmt == packaging.ZIP else "package.tar.gz"
        fields.append(("package", (name, package, packaging.CONTENT_TYPES[fmt])))
    return encode_multipart_formdata(fields)


class FunctionManager(Manager):
    path = "/functions"

    def list(self, name=None, runtime_id=None, **kwargs):
        params, limit = list_params(name=name, runtime_id=runtime_id, **kwargs)
        return self.http.list(self.path, "functions", params, limit)

    def get(self, function):
        return self.http.get_json("%s/%s" % (self.path, quote(function)))["function"]

    def create(self, name, package=None, package_format=None, **fields):
        """Creates a function; `package` is the archive's bytes (zip or tar.gz) if any."""
        metadata = drop_none(dict(fields, name=name))
        _check_fields(metadata)
        if package is None:
            resp = self.http.request("POST", self.path, json=metadata)
        else:
            fmt = package_format or packaging.detect_format(package)
            body, ctype = _multipart(metadata, package, fmt)
            resp = self.http.request("POST", self.path, data=body,
                                     headers={"Content-Type": ctype})
        return resp.json()["function"]

    def update(self, function, package=None, package_format=None, **fields):
        """Changes settings and/or replaces the code (multipart when code is given)."""
        metadata = drop_none(fields)
        _check_fields(metadata)
        url = "%s/%s" % (self.path, quote(function))
        if package is None:
            if not metadata:
                raise exceptions.ValidationError("nothing to update")
            resp = self.http.request("PATCH", url, json=metadata)
        else:
            fmt = package_format or packaging.detect_format(package)
            body, ctype = _multipart(metadata or None, package, fmt)
            resp = self.http.request("PATCH", url, data=body, headers={"Content-Type": ctype})
        return resp.json()["function"]

    def upload_code(self, function, package, package_format=None):
        fmt = package_format or packaging.detect_format(package)
        resp = self.http.request(
            "PUT", "%s/%s/code" % (self.path, quote(function)), data=package,
            headers={"Content-Type": packaging.CONTENT_TYPES[fmt]})
        return resp.json()["function"]

    def download(self, function):
        """Returns (archive bytes, format, file name suggested by the server or None)."""
        resp = self.http.request("GET", "%s/%s/code" % (self.path, quote(function)),
                                 headers={"Accept": "application/zip, application/gzip"})
        ctype = resp.headers.get("Content-Type", "")
        if "gzip" in ctype:
            fmt = packaging.TAR_GZ
        elif "zip" in ctype:
            fmt = packaging.ZIP
        else:
            fmt = packaging.detect_format(resp.content, "the downloaded code")
        return resp.content, fmt, _disposition_filename(resp.headers.get("Content-Disposition"))

    def delete(self, function):
        self.http.request("DELETE", "%s/%s" % (self.path, quote(function)))

    def invoke(self, function, event=None, data=None, version=None, alias=None, is_async=False):
        """Invokes a function with `event` (any JSON value) or raw JSON text `data`."""
        if version is not None and alias is not None:
            raise exceptions.ValidationError("give a version or an alias, not both")
        if data is None:
            data = json.dumps({} if event is None else event)
        if isinstance(data, str):
            data = data.encode("utf-8")
        params = drop_none({"version": version, "alias": alias,
                            "async": "true" if is_async else None})
        resp = self.http.request(
            "POST", "%s/%s/invoke" % (self.path, quote(function)), params=params, data=data,
            headers={"Content-Type": "application/json", "Accept": "*/*"}, ok=(200, 202))
        return InvokeResult(resp)


def _check_fields(metadata):
    unknown = set(metadata) - set(FIELDS)
    if unknown:
        raise exceptions.ValidationError("unknown function field(s): %s" % ", ".join(sorted(unknown)))
    if "runtime" in metadata and "image" in metadata:
        raise exceptions.ValidationError("give a runtime or an image, not both")


def _disposition_filename(header):
    if not header:
        return None
    for part in header.split(";"):
        part = part.strip()
        if part.lower().startswith("filename="):
            name = part.split("=", 1)[1].strip().strip('"')
            # Only a bare file name: never a path chosen by the server.
            name = name.replace("\\", "/").rsplit("/", 1)[-1]
            return name or None
    return None

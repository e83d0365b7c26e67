"""SDK managers: request shapes and result handling."""

import io
import json
import zipfile

import pytest

from frescoclient import exceptions
from frescoclient.v1.aliases import UNSET

from .conftest import API, REQ_ID

RT_ID = "5b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11"


def _multipart_parts(request):
    """Splits a multipart/form-data body into {name: (content type, bytes)}."""
    ctype = request.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=", 1)[1].encode()
    parts = {}
    for chunk in request.body.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        name = headers["Content-Disposition"].split('name="', 1)[1].split('"', 1)[0]
        parts[name] = (headers.get("Content-Type"), body)
    return parts


def test_create_with_package_is_multipart(requests_mock, fresco):
    requests_mock.post(API + "/functions", status_code=201, json={"function": {"id": "f1"}})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", "x")
    fn = fresco.functions.create("hello", runtime="python3", package=buf.getvalue(),
                                 memory_mb=256, environment={"A": "1"})
    assert fn == {"id": "f1"}
    parts = _multipart_parts(requests_mock.last_request)
    assert set(parts) == {"metadata", "package"}
    assert json.loads(parts["metadata"][1]) == {"name": "hello", "runtime": "python3",
                                                "memory_mb": 256, "environment": {"A": "1"}}
    assert parts["package"] == ("application/zip", buf.getvalue())


def test_create_without_package_is_json(requests_mock, fresco):
    requests_mock.post(API + "/functions", status_code=201, json={"function": {"id": "f1"}})
    fresco.functions.create("img", image="local/thing:1")
    assert requests_mock.last_request.json() == {"name": "img", "image": "local/thing:1"}
    with pytest.raises(exceptions.ValidationError, match="runtime or an image, not both"):
        fresco.functions.create("x", runtime="a", image="b")
    with pytest.raises(exceptions.ValidationError, match="unknown function field"):
        fresco.functions.create("x", runtime="a", colour="red")


def test_names_are_quoted_in_paths(requests_mock, fresco):
    requests_mock.get(API + "/functions/a%20b%2Fc", json={"function": {"id": "f"}})
    assert fresco.functions.get("a b/c") == {"id": "f"}


def test_sync_invoke_reads_headers(requests_mock, fresco):
    requests_mock.post(API + "/functions/f/invoke", json={"ok": True}, headers={
        "X-Execution-Id": "e1", "X-Execution-Status": "succeeded",
        "X-Execution-Duration-Ms": "12", "x-openstack-request-id": REQ_ID})
    res = fresco.functions.invoke("f", {"n": 1}, alias="live")
    req = requests_mock.last_request
    assert req.json() == {"n": 1} and req.qs == {"alias": ["live"]}
    assert req.headers["Content-Type"] == "application/json"
    assert (res.execution_id, res.status, res.duration_ms, res.result) == ("e1", "succeeded", 12, {"ok": True})
    assert not res.is_async and res.request_id == REQ_ID


def test_async_invoke_returns_execution(requests_mock, fresco):
    requests_mock.post(API + "/functions/f/invoke", status_code=202,
                       json={"execution": {"id": "e2", "status": "queued"}})
    res = fresco.functions.invoke("f", data="[1, 2]", version=3, is_async=True)
    assert requests_mock.last_request.qs == {"version": ["3"], "async": ["true"]}
    assert requests_mock.last_request.body == b"[1, 2]"
    assert res.is_async and res.execution_id == "e2" and res.status == "queued"
    with pytest.raises(exceptions.ValidationError):
        fresco.functions.invoke("f", version=1, alias="a")


def test_download_reads_format_and_safe_filename(requests_mock, fresco):
    requests_mock.get(API + "/functions/f/code", content=b"\x1f\x8bdata", headers={
        "Content-Type": "application/gzip",
        "Content-Disposition": 'attachment; filename="../../etc/f.tar.gz"'})
    data, fmt, name = fresco.functions.download("f")
    assert (data, fmt, name) == (b"\x1f\x8bdata", "tar.gz", "f.tar.gz")


def test_upload_code_content_type(requests_mock, fresco):
    requests_mock.put(API + "/functions/f/code", json={"function": {"id": "f"}})
    fresco.functions.upload_code("f", b"\x1f\x8b....")
    assert requests_mock.last_request.headers["Content-Type"] == "application/gzip"


def test_runtime_find_by_name_and_ambiguity(requests_mock, fresco):
    requests_mock.get(API + "/runtimes", json={"runtimes": [
        {"id": RT_ID, "name": "python3"}, {"id": "x1", "name": "dup"}, {"id": "x2", "name": "dup"}]})
    requests_mock.patch(API + "/runtimes/" + RT_ID, json={"runtime": {"id": RT_ID}})
    fresco.runtimes.update("python3", status="disabled")
    assert requests_mock.last_request.json() == {"status": "disabled"}
    with pytest.raises(exceptions.NotFound, match="runtime 'ruby' could not be found"):
        fresco.runtimes.find("ruby")
    with pytest.raises(exceptions.ClientException, match="more than one runtime"):
        fresco.runtimes.find("dup")
    with pytest.raises(exceptions.ValidationError, match="kind must be"):
        fresco.runtimes.create("r", "img", "java")


def test_alias_update_can_clear_second_version(requests_mock, fresco):
    requests_mock.patch(API + "/functions/f/aliases/live", json={"alias": {"name": "live"}})
    fresco.aliases.update("f", "live", version=2, second_version=UNSET, second_weight=0)
    assert requests_mock.last_request.json() == {"version": 2, "second_version": None,
                                                 "second_weight": 0}
    with pytest.raises(exceptions.ValidationError, match="between 0 and 100"):
        fresco.aliases.create("f", "a", 1, second_version=2, second_weight=101)


def test_quota_update_validates(requests_mock, fresco):
    requests_mock.put(API + "/quotas/p1", json={"quota": {"project_id": "p1"}})
    fresco.quotas.update("p1", functions=1, code_bytes=-1)
    assert requests_mock.last_request.json() == {"functions": 1, "code_bytes": -1}
    with pytest.raises(exceptions.ValidationError, match="unknown quota"):
        fresco.quotas.update("p1", gpus=1)
    with pytest.raises(exceptions.ValidationError, match="integer >= -1"):
        fresco.quotas.update("p1", functions=-5)


def test_follow_log_yields_increments_until_terminal(requests_mock, fresco):
    requests_mock.get(API + "/executions/e1", [
        {"json": {"execution": {"id": "e1", "status": "running"}}},
        {"json": {"execution": {"id": "e1", "status": "running"}}},
        {"json": {"execution": {"id": "e1", "status": "succeeded"}}},
    ])
    requests_mock.get(API + "/executions/e1/log", [
        {"text": "one\n"}, {"text": "one\ntwo\n"}, {"text": "one\ntwo\nthree\n"}])
    sleeps = []
    stream = fresco.executions.follow_log("e1", interval=0.5, sleep=sleeps.append)
    chunks = []
    with pytest.raises(StopIteration) as done:
        while True:
            chunks.append(next(stream))
    assert chunks == ["one\n", "two\n", "three\n"]
    assert done.value.value["status"] == "succeeded"
    assert sleeps == [0.5, 0.5]


def test_wait_times_out(requests_mock, fresco):
    requests_mock.get(API + "/executions/e1", json={"execution": {"id": "e1", "status": "queued"}})
    now = [0.0]

    def sleep(s):
        now[0] += s
    with pytest.raises(TimeoutError, match="still queued after 3s"):
        fresco.executions.wait("e1", interval=1, timeout=3, sleep=sleep, clock=lambda: now[0])

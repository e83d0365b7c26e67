"""The osc command classes: argument parsing, requests sent, output (table and json)."""

import json

import pytest
from osc_lib import exceptions as osc_exc

from frescoclient import exceptions
from frescoclient.osc.v1 import agents, aliases, executions, functions, quotas, runtimes, versions

from .conftest import API, PROJECT, REQ_ID, error_body
from .test_sdk import _multipart_parts

FN = {"id": "9d4c3a0e-1111-4c2f-a0a1-1f5d8a0b8c11", "name": "hello", "project_id": PROJECT,
      "runtime_id": "rt", "handler": "main.handler", "memory_mb": 128, "timeout_s": 3,
      "environment": {"A": "1"}, "description": "", "latest_version": 0,
      "code": {"sha256": "ab", "size": 10, "format": "zip"},
      "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}


def test_create_from_code_dir_json_output(requests_mock, run, tmp_path):
    (tmp_path / "main.py").write_text("def handler(e, c):\n    return e\n")
    requests_mock.post(API + "/functions", status_code=201, json={"function": FN})
    out = run(functions.CreateFunction, [
        "hello", "--runtime", "python3", "--code-dir", str(tmp_path), "--memory", "256",
        "--timeout", "10", "--env", "A=1", "--env", "B=x=y", "-f", "json"])
    assert out["id"] == FN["id"] and out["environment"] == {"A": "1"}
    assert out["code"] == FN["code"]
    parts = _multipart_parts(requests_mock.last_request)
    assert json.loads(parts["metadata"][1]) == {
        "name": "hello", "runtime": "python3", "memory_mb": 256, "timeout_s": 10,
        "environment": {"A": "1", "B": "x=y"}}
    assert parts["package"][0] == "application/zip"
    assert parts["package"][1][:4] == b"PK\x03\x04"


def test_create_table_output_and_column_selection(requests_mock, run):
    requests_mock.post(API + "/functions", status_code=201, json={"function": FN})
    out = run(functions.CreateFunction, ["hello", "--image", "local/x:1", "-f", "value",
                                         "-c", "id", "-c", "memory_mb"])
    assert out.split("\n")[:2] == [FN["id"], "128"]
    assert requests_mock.last_request.json() == {"name": "hello", "image": "local/x:1"}


def test_create_needs_runtime_or_image_and_valid_env(run):
    with pytest.raises(osc_exc.CommandError, match="give --runtime or --image"):
        run(functions.CreateFunction, ["hello"])
    with pytest.raises(osc_exc.CommandError, match="--env expects KEY=VALUE"):
        run(functions.CreateFunction, ["hello", "--runtime", "r", "--env", "novalue"])
    with pytest.raises(SystemExit):
        run(functions.CreateFunction, ["hello", "--runtime", "r", "--image", "i"])
    with pytest.raises(SystemExit):
        run(functions.CreateFunction, ["hello", "--runtime", "r", "--code-dir", "a", "--package", "b"])
    with pytest.raises(SystemExit):
        run(functions.CreateFunction, ["hello", "--runtime", "r", "--memory", "0"])


def test_create_from_tar_gz_package(requests_mock, run, tmp_path):
    pkg = tmp_path / "code.tar.gz"
    pkg.write_bytes(b"\x1f\x8b\x08rest")
    requests_mock.post(API + "/functions", status_code=201, json={"function": FN})
    run(functions.CreateFunction, ["hello", "--runtime", "python3", "--package", str(pkg)])
    parts = _multipart_parts(requests_mock.last_request)
    assert parts["package"] == ("application/gzip", b"\x1f\x8b\x08rest")


def test_list_functions_paging_and_filters(requests_mock, run):
    rt = "5b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11"
    requests_mock.get(API + "/runtimes", json={"runtimes": [{"id": rt, "name": "python3"}]})
    requests_mock.get(API + "/functions", json={"functions": [FN]})
    out = run(functions.ListFunction, ["--runtime", "python3", "--limit", "5", "--marker", "m",
                                       "--sort-key", "name", "--sort-dir", "desc",
                                       "--all-projects", "-f", "json"])
    assert out == [{"ID": FN["id"], "Name": "hello", "Runtime ID": "rt", "Memory MB": 128,
                    "Timeout S": 3, "Latest Version": 0}]
    assert requests_mock.last_request.qs == {
        "runtime_id": [rt], "limit": ["5"], "marker": ["m"], "sort_key": ["name"],
        "sort_dir": ["desc"], "all_projects": ["true"]}
    out = run(functions.ListFunction, ["--long", "-f", "json"])
    assert out[0]["Handler"] == "main.handler" and out[0]["Project ID"] == PROJECT


def test_list_filters_by_project_id(requests_mock, run):
    requests_mock.get(API + "/functions", json={"functions": []})
    run(functions.ListFunction, ["--project", PROJECT])
    assert requests_mock.last_request.qs == {"project_id": [PROJECT], "all_projects": ["true"]}


def test_show_function_by_name(requests_mock, run):
    requests_mock.get(API + "/functions/hello", json={"function": FN})
    out = run(functions.ShowFunction, ["hello"])
    assert "| environment    | {\"A\": \"1\"}" in out
    assert FN["id"] in out


def test_api_error_propagates_with_request_id(requests_mock, run):
    requests_mock.get(API + "/functions/ghost", **error_body(404, "function 'ghost' could not be found"))
    with pytest.raises(exceptions.NotFound) as info:
        run(functions.ShowFunction, ["ghost"])
    assert str(info.value) == ("function 'ghost' could not be found (HTTP 404) "
                               "(Request-ID: %s)" % REQ_ID)


def test_set_merges_environment(requests_mock, run):
    requests_mock.get(API + "/functions/hello", json={"function": FN})
    requests_mock.patch(API + "/functions/hello", json={"function": FN})
    out = run(functions.SetFunction, ["hello", "--env", "B=2", "--unset-env", "A", "--timeout", "9"])
    assert out == ""
    assert requests_mock.last_request.method == "PATCH"
    assert requests_mock.last_request.json() == {"timeout_s": 9, "environment": {"B": "2"}}
    with pytest.raises(osc_exc.CommandError, match="nothing to change"):
        run(functions.SetFunction, ["hello"])


def test_set_code_is_multipart_patch(requests_mock, run, tmp_path):
    (tmp_path / "main.py").write_text("x")
    requests_mock.patch(API + "/functions/hello", json={"function": FN})
    run(functions.SetFunction, ["hello", "--code-dir", str(tmp_path)])
    parts = _multipart_parts(requests_mock.last_request)
    assert set(parts) == {"package"}


def test_delete_several_reports_failures(requests_mock, run):
    requests_mock.delete(API + "/functions/a", status_code=204)
    requests_mock.delete(API + "/functions/b", **error_body(409, "function 'b' is in use"))
    requests_mock.delete(API + "/functions/c", status_code=204)
    with pytest.raises(osc_exc.CommandError, match="failed to delete 1 of 3 functions"):
        run(functions.DeleteFunction, ["a", "b", "c"])
    assert [r.path for r in requests_mock.request_history] == [
        "/v1/functions/a", "/v1/functions/b", "/v1/functions/c"]


def test_download_writes_file(requests_mock, run, tmp_path, monkeypatch):
    requests_mock.get(API + "/functions/hello/code", content=b"PK\x03\x04zz",
                      headers={"Content-Type": "application/zip"})
    monkeypatch.chdir(tmp_path)
    run(functions.DownloadFunction, ["hello"])
    assert (tmp_path / "hello.zip").read_bytes() == b"PK\x03\x04zz"
    run(functions.DownloadFunction, ["hello", "--file", str(tmp_path / "x.bin")])
    assert (tmp_path / "x.bin").read_bytes() == b"PK\x03\x04zz"


def test_invoke_sync_prints_result_and_execution_id(requests_mock, run):
    requests_mock.post(API + "/functions/hello/invoke", json={"greeting": "hi"}, headers={
        "X-Execution-Id": "e1", "X-Execution-Status": "succeeded", "X-Execution-Duration-Ms": "7"})
    out = run(functions.InvokeFunction, ["hello", "--data", '{"name": "x"}', "-f", "json"])
    assert out == {"execution_id": "e1", "status": "succeeded", "duration_ms": 7,
                   "result": {"greeting": "hi"}}
    assert requests_mock.last_request.body == b'{"name": "x"}'
    out = run(functions.InvokeFunction, ["hello", "--function-version", "2"])
    assert "| execution_id | e1" in out and '{"greeting": "hi"}' in out
    assert requests_mock.last_request.qs == {"version": ["2"]}
    assert requests_mock.last_request.body == b"{}"


def test_invoke_function_error_is_shown(requests_mock, run):
    err = {"errorType": "ValueError", "errorMessage": "bad", "stackTrace": []}
    requests_mock.post(API + "/functions/hello/invoke", json=err, headers={
        "X-Execution-Id": "e9", "X-Execution-Status": "failed"})
    out = run(functions.InvokeFunction, ["hello", "-f", "json"])
    assert out["status"] == "failed" and out["result"] == err


def test_invoke_async_shows_execution(requests_mock, run):
    requests_mock.post(API + "/functions/hello/invoke", status_code=202,
                       json={"execution": {"id": "e2", "status": "queued", "is_async": True}})
    out = run(functions.InvokeFunction, ["hello", "--async", "--alias", "live", "-f", "json"])
    assert out["id"] == "e2" and out["status"] == "queued"
    assert requests_mock.last_request.qs == {"async": ["true"], "alias": ["live"]}


def test_invoke_data_sources(requests_mock, run, tmp_path, monkeypatch):
    requests_mock.post(API + "/functions/hello/invoke", text="plain", headers={
        "X-Execution-Id": "e1", "X-Execution-Status": "succeeded"})
    f = tmp_path / "ev.json"
    f.write_text('[1, 2]')
    out = run(functions.InvokeFunction, ["hello", "--data-file", str(f), "-f", "json"])
    assert requests_mock.last_request.body == b"[1, 2]" and out["result"] == "plain"
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    run(functions.InvokeFunction, ["hello", "--data-file", "-"])
    assert requests_mock.last_request.body == b'{"from": "stdin"}'
    with pytest.raises(osc_exc.CommandError, match="from --data is not valid json"):
        run(functions.InvokeFunction, ["hello", "--data", "{nope"])
    with pytest.raises(SystemExit):
        run(functions.InvokeFunction, ["hello", "--function-version", "1", "--alias", "a"])
    with pytest.raises(SystemExit):
        run(functions.InvokeFunction, ["hello", "--data", "{}", "--data-file", "x"])


def test_versions(requests_mock, run):
    v = {"function_id": FN["id"], "version": 1, "description": "first", "memory_mb": 128,
         "timeout_s": 3, "runtime_id": "rt", "created_at": "t"}
    requests_mock.post(API + "/functions/hello/versions", status_code=201, json={"version": v})
    out = run(versions.CreateVersion, ["hello", "--description", "first", "-f", "json"])
    assert out["version"] == 1 and requests_mock.last_request.json() == {"description": "first"}
    requests_mock.get(API + "/functions/hello/versions", json={"versions": [v]})
    out = run(versions.ListVersion, ["hello", "-f", "json"])
    assert out[0]["Version"] == 1 and out[0]["Description"] == "first"
    requests_mock.get(API + "/functions/hello/versions/1", json={"version": v})
    assert run(versions.ShowVersion, ["hello", "1", "-f", "json"])["description"] == "first"
    requests_mock.delete(API + "/functions/hello/versions/1", status_code=204)
    requests_mock.delete(API + "/functions/hello/versions/2", **error_body(409, "in use"))
    with pytest.raises(osc_exc.CommandError, match="failed to delete 1 of 2 versions"):
        run(versions.DeleteVersion, ["hello", "1", "2"])


def test_aliases(requests_mock, run):
    a = {"function_id": FN["id"], "name": "live", "version": 1, "second_version": 2,
         "second_weight": 10, "description": ""}
    requests_mock.post(API + "/functions/hello/aliases", status_code=201, json={"alias": a})
    out = run(aliases.CreateAlias, ["hello", "live", "--function-version", "1",
                                    "--second-version", "2", "--second-weight", "10", "-f", "json"])
    assert out["second_weight"] == 10
    assert requests_mock.last_request.json() == {"name": "live", "version": 1,
                                                 "second_version": 2, "second_weight": 10}
    with pytest.raises(SystemExit):
        run(aliases.CreateAlias, ["hello", "live"])  # --function-version is required
    with pytest.raises(SystemExit):
        run(aliases.CreateAlias, ["hello", "live", "--function-version", "1", "--second-weight", "101"])
    requests_mock.patch(API + "/functions/hello/aliases/live", json={"alias": a})
    run(aliases.SetAlias, ["hello", "live", "--no-second-version"])
    assert requests_mock.last_request.json() == {"second_version": None, "second_weight": 0}
    requests_mock.get(API + "/functions/hello/aliases", json={"aliases": [a]})
    assert run(aliases.ListAlias, ["hello", "-f", "json"])[0]["Second Weight"] == 10
    requests_mock.get(API + "/functions/hello/aliases/live", json={"alias": a})
    assert run(aliases.ShowAlias, ["hello", "live", "-f", "json"])["name"] == "live"
    requests_mock.delete(API + "/functions/hello/aliases/live", status_code=204)
    run(aliases.DeleteAlias, ["hello", "live"])
    assert requests_mock.last_request.method == "DELETE"


def test_alias_shadow(requests_mock, run):
    a = {"function_id": FN["id"], "name": "live", "version": 1, "second_version": None,
         "second_weight": 0, "shadow_version": 2, "shadow_percent": 25, "description": ""}
    requests_mock.post(API + "/functions/hello/aliases", status_code=201, json={"alias": a})
    out = run(aliases.CreateAlias, ["hello", "live", "--function-version", "1",
                                    "--shadow-version", "2", "--shadow-percent", "25",
                                    "-f", "json"])
    assert (out["shadow_version"], out["shadow_percent"]) == (2, 25)
    assert requests_mock.last_request.json() == {"name": "live", "version": 1,
                                                 "shadow_version": 2, "shadow_percent": 25}
    with pytest.raises(osc_exc.CommandError, match="--shadow-percent needs --shadow-version"):
        run(aliases.CreateAlias, ["hello", "a", "--function-version", "1", "--shadow-percent", "5"])
    with pytest.raises(SystemExit):
        run(aliases.SetAlias, ["hello", "live", "--shadow-percent", "101"])
    requests_mock.patch(API + "/functions/hello/aliases/live", json={"alias": a})
    run(aliases.SetAlias, ["hello", "live", "--shadow-version", "3", "--shadow-percent", "50"])
    assert requests_mock.last_request.json() == {"shadow_version": 3, "shadow_percent": 50}
    run(aliases.SetAlias, ["hello", "live", "--no-shadow-version"])
    assert requests_mock.last_request.json() == {"shadow_version": None}
    with pytest.raises(SystemExit):
        run(aliases.SetAlias, ["hello", "live", "--shadow-version", "3", "--no-shadow-version"])
    comparison = {"function_id": FN["id"], "alias": "live", "version": 1, "shadow_version": 2,
                  "shadow_percent": 25, "same": 8, "different": 4, "shadow_error": 3,
                  "primary_error": 1, "skipped": 0, "since": "2026-11-30T21:00:00Z",
                  "updated_at": "2026-11-30T21:01:00Z",
                  "sample": [{"kind": "different", "input": "{\"n\": 3}"}]}
    requests_mock.get(API + "/functions/hello/aliases/live/comparison",
                      json={"comparison": comparison})
    out = run(aliases.ShowAliasComparison, ["hello", "live", "-f", "json"])
    assert (out["same"], out["different"], out["shadow_error"], out["primary_error"]) == (8, 4, 3, 1)
    assert out["sample"][0]["kind"] == "different"
    requests_mock.get(API + "/functions/hello/aliases/gone/comparison",
                      **error_body(404, "alias gone could not be found"))
    with pytest.raises(Exception, match="could not be found"):
        run(aliases.ShowAliasComparison, ["hello", "gone"])


def test_execution_list_resolves_function_name(requests_mock, run):
    requests_mock.get(API + "/functions/hello", json={"function": FN})
    requests_mock.get(API + "/executions", json={"executions": [
        {"id": "e1", "function_id": FN["id"], "function_version": 0, "status": "succeeded",
         "is_async": False, "duration_ms": 5, "created_at": "t"}]})
    out = run(executions.ListExecution, ["--function", "hello", "--status", "succeeded", "-f", "json"])
    assert out[0]["ID"] == "e1" and out[0]["Status"] == "succeeded"
    assert requests_mock.last_request.qs == {"function_id": [FN["id"]], "status": ["succeeded"]}
    with pytest.raises(SystemExit):
        run(executions.ListExecution, ["--status", "bogus"])


def test_execution_show_delete_and_log(requests_mock, run):
    requests_mock.get(API + "/executions/e1", json={"execution": {"id": "e1", "status": "failed",
                                                                  "error": {"errorType": "X"}}})
    out = run(executions.ShowExecution, ["e1", "-f", "json"])
    assert out["error"] == {"errorType": "X"}
    requests_mock.get(API + "/executions/e1/log", text="line 1\nline 2\n")
    assert run(executions.ShowExecutionLog, ["e1"]) == "line 1\nline 2\n"
    requests_mock.delete(API + "/executions/e1", status_code=204)
    run(executions.DeleteExecution, ["e1"])
    assert requests_mock.last_request.method == "DELETE"


def test_execution_log_follow(requests_mock, run):
    requests_mock.get(API + "/executions/e1", [
        {"json": {"execution": {"id": "e1", "status": "queued"}}},
        {"json": {"execution": {"id": "e1", "status": "running"}}},
        {"json": {"execution": {"id": "e1", "status": "timeout"}}}])
    requests_mock.get(API + "/executions/e1/log", [
        {"text": ""}, {"text": "a\n"}, {"text": "a\nb\n"}])
    out = run(executions.ShowExecutionLog, ["e1", "--follow", "--interval", "0.01"])
    assert out == "a\nb\n"
    assert requests_mock.call_count == 6


def test_execution_log_follow_gives_up(requests_mock, run):
    requests_mock.get(API + "/executions/e1", json={"execution": {"id": "e1", "status": "running"}})
    requests_mock.get(API + "/executions/e1/log", text="")
    with pytest.raises(osc_exc.CommandError, match="still running after 0.05s"):
        run(executions.ShowExecutionLog, ["e1", "--follow", "--interval", "0.01",
                                          "--wait-timeout", "0.05"])


def test_runtimes(requests_mock, run):
    rid = "5b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11"
    rt = {"id": rid, "name": "python3", "kind": "python", "image": "fresco/python3",
          "status": "available", "is_public": True, "network": False}
    requests_mock.post(API + "/runtimes", status_code=201, json={"runtime": rt})
    out = run(runtimes.CreateRuntime, ["python3", "--image", "fresco/python3", "--kind", "python",
                                       "--memory-max", "512", "--no-network", "-f", "json"])
    assert out["id"] == rid
    assert requests_mock.last_request.json() == {"name": "python3", "image": "fresco/python3",
                                                 "kind": "python", "network": False,
                                                 "memory_max_mb": 512}
    requests_mock.get(API + "/runtimes", json={"runtimes": [rt]})
    out = run(runtimes.ListRuntime, ["-f", "json"])
    assert out == [{"ID": rid, "Name": "python3", "Kind": "python", "Image": "fresco/python3",
                    "Status": "available", "Public": True}]
    assert run(runtimes.ShowRuntime, ["python3", "-f", "json"])["image"] == "fresco/python3"
    requests_mock.patch(API + "/runtimes/" + rid, json={"runtime": rt})
    run(runtimes.SetRuntime, ["python3", "--disable", "--public"])
    assert requests_mock.last_request.json() == {"status": "disabled", "is_public": True}
    requests_mock.delete(API + "/runtimes/" + rid, status_code=204)
    run(runtimes.DeleteRuntime, ["python3"])
    assert requests_mock.last_request.path == "/v1/runtimes/" + rid
    with pytest.raises(SystemExit):
        run(runtimes.CreateRuntime, ["x", "--image", "i", "--kind", "java"])


QUOTA = {"project_id": PROJECT, "functions": {"limit": 1, "in_use": 1},
         "code_bytes": {"limit": -1, "in_use": 0}, "memory_mb_max": {"limit": 2048},
         "timeout_s_max": {"limit": 900}, "concurrent_executions": {"limit": 10, "in_use": 0},
         "executions_per_minute": {"limit": 60000},
         "queued_executions": {"limit": 50, "in_use": 7}}


def test_quota_show_defaults_to_current_project(requests_mock, run, fresco, monkeypatch):
    monkeypatch.setattr(fresco, "current_project_id", lambda: PROJECT)
    requests_mock.get(API + "/quotas/" + PROJECT, json={"quota": QUOTA})
    out = run(quotas.ShowQuota, ["-f", "json"])
    assert out["functions"] == 1 and out["functions_in_use"] == 1
    assert out["code_bytes"] == -1 and out["memory_mb_max"] == 2048
    assert "memory_mb_max_in_use" not in out
    assert out["queued_executions"] == 50 and out["queued_executions_in_use"] == 7


def test_quota_show_without_project_fails_clearly(run, fresco, monkeypatch):
    monkeypatch.setattr(fresco, "current_project_id", lambda: None)
    with pytest.raises(osc_exc.CommandError, match="cannot tell the current project"):
        run(quotas.ShowQuota, [])


def test_quota_set_and_delete(requests_mock, run):
    requests_mock.put(API + "/quotas/" + PROJECT, json={"quota": QUOTA})
    out = run(quotas.SetQuota, [PROJECT, "--functions", "1", "--concurrent-executions", "10",
                                "--code-bytes", "-1", "--queued-executions", "50", "-f", "json"])
    assert requests_mock.last_request.json() == {"functions": 1, "code_bytes": -1,
                                                 "concurrent_executions": 10,
                                                 "queued_executions": 50}
    assert out["concurrent_executions"] == 10
    with pytest.raises(osc_exc.CommandError, match="nothing to change"):
        run(quotas.SetQuota, [PROJECT])
    with pytest.raises(SystemExit):
        run(quotas.SetQuota, [PROJECT, "--functions", "-2"])
    requests_mock.delete(API + "/quotas/" + PROJECT, status_code=204)
    run(quotas.DeleteQuota, [PROJECT])
    assert requests_mock.last_request.method == "DELETE"


def test_usage_show(requests_mock, run):
    requests_mock.get(API + "/usage", json={"usage": {
        "project_id": PROJECT, "executions": 3, "gb_seconds": 0.5, "by_status": {"succeeded": 3}}})
    out = run(quotas.ShowUsage, ["--project", PROJECT, "-f", "json"])
    assert out == {"project_id": PROJECT, "executions": 3, "gb_seconds": 0.5,
                   "by_status": {"succeeded": 3}}
    assert requests_mock.last_request.qs == {"project_id": [PROJECT]}


def test_agent_list(requests_mock, run):
    requests_mock.get(API + "/agents", json={"agents": [{
        "id": "node1", "host": "node1", "url": "http://127.0.0.1:8902", "state": "up",
        "memory_mb_total": 1000, "memory_mb_reserved": 128, "cpus": 2, "running": 1,
        "warm": [{"function_id": "f", "count": 1}], "last_heartbeat": "t"}]})
    out = run(agents.ListAgent, ["--long", "-f", "json"])
    assert out[0]["State"] == "up" and out[0]["Warm"] == [{"function_id": "f", "count": 1}]
    out = run(agents.ListAgent, [])
    assert "| node1 | node1 | up" in out

"""openstack function run-local: the fresco-agent command line it builds and runs, and what it
prints. A stand-in fresco-agent (a script recording its arguments) answers here; the real
binary runs in the quick start test (tools/tests/quickstart.sh) and tests/e2e/local.rs."""

import json
import os
import stat

import pytest
from osc_lib import exceptions as osc_exc

from frescoclient.osc.v1 import local


def _agent(tmp_path, status=0, stdout='{"greeting": "hello"}', stderr="a log line\n"):
    """A fresco-agent that records its argv in argv.json, prints stdout/stderr, exits status."""
    script = tmp_path / "fresco-agent"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "json.dump(sys.argv[1:], open(%r, 'w'))\n"
        "sys.stdout.write(%r)\n"
        "sys.stderr.write(%r)\n"
        "sys.exit(%d)\n" % (str(tmp_path / "argv.json"), stdout + "\n", stderr, status))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _argv(tmp_path):
    return json.loads((tmp_path / "argv.json").read_text())


def test_run_local_passes_every_setting_and_prints_the_result(run, app, tmp_path):
    agent = _agent(tmp_path)
    out = run(local.RunLocal, [
        "--runtime-image", "fresco/python3:dev", "--handler", "main.handler",
        "--code-dir", "/src/fn", "--data", '{"name": "x"}', "--name", "hello",
        "--memory", "256", "--timeout", "10", "--env", "A=1", "--env", "B=x=y",
        "--runtime-kind", "python", "--agent-binary", str(agent), "--shim-path", "/opt/shim"])
    assert out == '{"greeting": "hello"}\n'
    assert app.stderr.getvalue() == "a log line\n"
    assert _argv(tmp_path) == [
        "run-local", "--runtime-image", "fresco/python3:dev", "--handler", "main.handler",
        "--event", '{"name": "x"}', "--code-dir", "/src/fn", "--runtime-kind", "python",
        "--name", "hello", "--memory-mb", "256", "--timeout-s", "10", "--shim-path", "/opt/shim",
        "--env", "A=1", "--env", "B=x=y"]


def test_run_local_finds_the_agent_in_the_environment_and_reads_the_event_file(
        run, tmp_path, monkeypatch):
    agent = _agent(tmp_path)
    monkeypatch.setenv(local.AGENT_ENV, str(agent))
    event = tmp_path / "event.json"
    event.write_text('[1, 2]')
    run(local.RunLocal, ["--runtime-image", "fresco/provided:dev", "--handler", "h",
                         "--package", "/tmp/code.zip", "--data-file", str(event)])
    assert _argv(tmp_path) == ["run-local", "--runtime-image", "fresco/provided:dev",
                               "--handler", "h", "--event", "[1, 2]", "--package", "/tmp/code.zip"]


def test_run_local_on_path_by_default(run, tmp_path, monkeypatch):
    _agent(tmp_path)
    monkeypatch.delenv(local.AGENT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    run(local.RunLocal, ["--runtime-image", "i/python3", "--handler", "h", "--code-dir", "."])
    assert _argv(tmp_path)[:2] == ["run-local", "--runtime-image"]
    assert _argv(tmp_path)[6] == "{}"


def test_a_failed_function_prints_its_error_and_fails(run, app, tmp_path):
    error = '{"errorMessage":"boom","errorType":"ValueError"}'
    agent = _agent(tmp_path, status=1, stdout=error,
                   stderr="Traceback\nfresco-agent: error: the function ended with status failed\n")
    with pytest.raises(osc_exc.CommandError,
                       match=r"run-local failed \(status 1\): fresco-agent: error: the function "
                             r"ended with status failed"):
        run(local.RunLocal, ["--runtime-image", "i/python3", "--handler", "h", "--code-dir", ".",
                             "--agent-binary", str(agent)])
    assert app.stdout.getvalue() == error + "\n"
    assert "Traceback" in app.stderr.getvalue()


def test_mistakes_are_refused_before_anything_runs(run, tmp_path, monkeypatch):
    agent = _agent(tmp_path)
    base = ["--runtime-image", "i/python3", "--handler", "h", "--agent-binary", str(agent)]
    with pytest.raises(osc_exc.CommandError, match="the event from --data is not valid json"):
        run(local.RunLocal, base + ["--code-dir", ".", "--data", "{nope"])
    with pytest.raises(osc_exc.CommandError, match="--env expects KEY=VALUE"):
        run(local.RunLocal, base + ["--code-dir", ".", "--env", "novalue"])
    with pytest.raises(SystemExit):
        run(local.RunLocal, base + ["--code-dir", ".", "--package", "p.zip"])
    with pytest.raises(SystemExit):
        run(local.RunLocal, base)
    with pytest.raises(SystemExit):
        run(local.RunLocal, base + ["--code-dir", ".", "--memory", "8"])
    assert not (tmp_path / "argv.json").exists()
    monkeypatch.delenv(local.AGENT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(osc_exc.CommandError, match="cannot find fresco-agent"):
        run(local.RunLocal, ["--runtime-image", "i", "--handler", "h", "--code-dir", "."])
    with pytest.raises(osc_exc.CommandError, match="is not an executable file"):
        run(local.RunLocal, ["--runtime-image", "i", "--handler", "h", "--code-dir", ".",
                             "--agent-binary", str(tmp_path / "argv.json.missing")])
    assert local.RunLocal.auth_required is False

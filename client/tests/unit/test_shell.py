"""The plugin inside the real `openstack` application (entry points, global options, auth).

These run openstackclient's own shell in-process, so they prove the entry points are
registered, make_client builds the adapter from OSC's options, the endpoint comes from the
service catalog (interface and region honoured) or from the override, and API errors print as
one line with the request id. Keystone and Fresco are answered by requests-mock.
"""

import json
import logging

import pytest
from keystoneauth1 import fixture as ksa_fixture
from openstackclient import shell as osc_shell

from .conftest import PROJECT, REQ_ID, error_body

KEYSTONE = "http://keystone.test/v3"


def _clear_os_env(monkeypatch):
    import os
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)


@pytest.fixture
def openstack(monkeypatch, capsys, tmp_path):
    _clear_os_env(monkeypatch)
    # openstacksdk skips a config file that does not exist and reads the user's own
    # clouds.yaml instead, where a single cloud (tools/up writes fresco-dev) becomes the default
    # cloud of every command; an empty file of our own keeps these runs to their arguments.
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "secure.yaml"))
    monkeypatch.chdir(tmp_path)

    def _run(*argv):
        # OpenStackClient caches each plugin's client on a class-level descriptor for the life
        # of the process (one command per process normally); drop it between runs.
        from openstackclient.common import clientmanager
        for cls in clientmanager.ClientManager.__mro__:
            cache = cls.__dict__.get("function")
            if cache is not None:
                cache._handle = None
        # Each run adds console handlers to the root logger; keep them to this run.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            rc = osc_shell.main(list(argv))
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return rc, out, err
    return _run


@pytest.fixture
def keystone(requests_mock):
    token = ksa_fixture.V3Token(project_id=PROJECT, project_name="demo", user_name="alice")
    svc = token.add_service("function")
    svc.add_standard_endpoints(public="http://public.test:8900", internal="http://internal.test:8900/v1",
                               region="RegionOne")
    svc.add_standard_endpoints(public="http://public-two.test:8900", region="RegionTwo")
    requests_mock.get(KEYSTONE, json=ksa_fixture.V3Discovery(KEYSTONE))
    requests_mock.post(KEYSTONE + "/auth/tokens", json=token,
                       headers={"X-Subject-Token": "user-token"}, status_code=201)
    return requests_mock


PASSWORD_ARGS = ["--os-auth-url", KEYSTONE, "--os-username", "alice", "--os-password", "pw",
                 "--os-project-name", "demo", "--os-user-domain-name", "Default",
                 "--os-project-domain-name", "Default"]


def test_entry_points_are_registered():
    from importlib.metadata import entry_points
    ext = [e for e in entry_points(group="openstack.cli.extension") if e.name == "function"]
    assert len(ext) == 1 and ext[0].value == "frescoclient.osc.plugin"
    cmds = {e.name for e in entry_points(group="openstack.function.v1")}
    for name in ("function_create", "function_invoke", "function_execution_log_show",
                 "function_quota_set", "function_agent_list", "function_usage_show",
                 "function_trigger_create", "function_trigger_set", "function_event-config_set",
                 "function_event-config_show", "function_dead-letter_list",
                 "function_dead-letter_replay"):
        assert name in cmds


def test_catalog_endpoint_public_by_default(openstack, keystone):
    keystone.get("http://public.test:8900/v1/functions", json={"functions": [{"id": "f1", "name": "a"}]})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne", "function", "list", "-f", "json")
    assert rc == 0, err
    assert json.loads(out)[0]["ID"] == "f1"
    assert keystone.last_request.headers["X-Auth-Token"] == "user-token"


def test_catalog_endpoint_honours_interface_and_region(openstack, keystone):
    keystone.get("http://internal.test:8900/v1/runtimes", json={"runtimes": []})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-interface", "internal", "--os-region-name",
                             "RegionOne", "function", "runtime", "list", "-f", "json")
    assert rc == 0, err
    assert keystone.last_request.url == "http://internal.test:8900/v1/runtimes"
    keystone.get("http://public-two.test:8900/v1/runtimes", json={"runtimes": []})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionTwo",
                             "function", "runtime", "list")
    assert rc == 0, err
    assert keystone.last_request.url == "http://public-two.test:8900/v1/runtimes"


def test_quota_show_uses_token_project(openstack, keystone):
    keystone.get("http://public.test:8900/v1/quotas/" + PROJECT, json={"quota": {
        "project_id": PROJECT, "functions": {"limit": 5, "in_use": 0}}})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne",
                             "function", "quota", "show", "-f", "json")
    assert rc == 0, err
    assert json.loads(out) == {"project_id": PROJECT, "functions": 5, "functions_in_use": 0}


def test_endpoint_override_option_and_env(openstack, requests_mock, monkeypatch):
    requests_mock.get("http://dev.test:8900/v1/agents", json={"agents": []})
    args = ["--os-auth-type", "admin_token", "--os-token", "alice:p1:admin",
            "--os-endpoint", "http://unused.test"]
    rc, out, err = openstack(*args, "--os-function-endpoint", "http://dev.test:8900",
                             "function", "agent", "list", "-f", "json")
    assert rc == 0, err
    assert json.loads(out) == []
    assert requests_mock.last_request.headers["X-Auth-Token"] == "alice:p1:admin"
    monkeypatch.setenv("OS_FUNCTION_ENDPOINT", "http://dev.test:8900/v1")
    rc, out, err = openstack(*args, "function", "agent", "list")
    assert rc == 0, err
    assert requests_mock.last_request.url == "http://dev.test:8900/v1/agents"


def test_clouds_yaml(openstack, keystone, tmp_path, monkeypatch):
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n"
        "  dev:\n"
        "    auth:\n"
        "      auth_url: %s\n"
        "      username: alice\n"
        "      password: pw\n"
        "      project_name: demo\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
        "    function_endpoint_override: http://yaml.test:8900\n" % KEYSTONE)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    keystone.get("http://yaml.test:8900/v1/functions/hello", json={"function": {"id": "f", "name": "hello"}})
    rc, out, err = openstack("--os-cloud", "dev", "function", "show", "hello", "-f", "value", "-c", "name")
    assert rc == 0, err
    assert out == "hello\n"
    assert keystone.last_request.headers["X-Auth-Token"] == "user-token"


def test_api_error_is_one_line_with_request_id(openstack, keystone):
    keystone.get("http://public.test:8900/v1/functions/ghost",
                 **error_body(404, "function 'ghost' could not be found"))
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne", "function", "show", "ghost")
    assert rc == 1
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["function 'ghost' could not be found (HTTP 404) (Request-ID: %s)" % REQ_ID]


def test_missing_catalog_entry_is_explained(openstack, requests_mock):
    token = ksa_fixture.V3Token(project_id=PROJECT)
    requests_mock.get(KEYSTONE, json=ksa_fixture.V3Discovery(KEYSTONE))
    requests_mock.post(KEYSTONE + "/auth/tokens", json=token,
                       headers={"X-Subject-Token": "t"}, status_code=201)
    rc, out, err = openstack(*PASSWORD_ARGS, "function", "list")
    assert rc == 1
    assert "service type 'function'" in err


def test_project_name_is_resolved_through_keystone(openstack, keystone):
    other = "fedcba9876543210fedcba9876543210"
    # the identity endpoint in the token's catalog, as Keystone's own bootstrap registers it
    token = ksa_fixture.V3Token(project_id=PROJECT, project_name="demo")
    token.add_service("identity").add_standard_endpoints(public=KEYSTONE, region="RegionOne")
    token.add_service("function").add_standard_endpoints(public="http://public.test:8900",
                                                         region="RegionOne")
    keystone.post(KEYSTONE + "/auth/tokens", json=token, headers={"X-Subject-Token": "t"},
                  status_code=201)
    keystone.get(KEYSTONE + "/projects/other-project", status_code=404, json={
        "error": {"code": 404, "message": "not found", "title": "Not Found"}})
    keystone.get(KEYSTONE + "/projects?name=other-project", json={"projects": [
        {"id": other, "name": "other-project", "domain_id": "default"}]})
    keystone.put("http://public.test:8900/v1/quotas/" + other, json={"quota": {
        "project_id": other, "functions": {"limit": 3, "in_use": 0}}})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne", "function", "quota",
                             "set", "other-project", "--functions", "3", "-f", "json")
    assert rc == 0, err
    assert json.loads(out)["project_id"] == other
    assert keystone.last_request.url == "http://public.test:8900/v1/quotas/" + other
    assert keystone.last_request.json() == {"functions": 3}


def test_event_commands_run_under_their_names(openstack, keystone):
    keystone.get("http://public.test:8900/v1/functions/report/event-config", json={
        "event_config": {"function_id": "f", "max_attempts": 2, "max_event_age_s": None,
                         "on_success": None, "on_failure": None, "dead_letter": True,
                         "updated_at": "t"}})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne",
                             "function", "event-config", "show", "report", "-f", "json")
    assert rc == 0, err
    assert json.loads(out)["dead_letter"] is True
    keystone.get("http://public.test:8900/v1/functions/report/dead-letters",
                 json={"dead_letters": []})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne",
                             "function", "dead-letter", "list", "report", "-f", "json")
    assert rc == 0, err
    assert json.loads(out) == []
    keystone.get("http://public.test:8900/v1/triggers", json={"triggers": []})
    rc, out, err = openstack(*PASSWORD_ARGS, "--os-region-name", "RegionOne",
                             "function", "trigger", "list", "-f", "json")
    assert rc == 0, err
    assert json.loads(out) == []

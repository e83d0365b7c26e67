"""Hooks: the SDK and the osc commands (openstack function hook create|list|show|delete)."""

import pytest
from osc_lib import exceptions as osc_exc

from frescoclient import exceptions
from frescoclient.osc.v1 import hooks

from .conftest import API, error_body

HID = "7c1a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11"
FID = "9d4c3a0e-1111-4c2f-a0a1-1f5d8a0b8c11"
PRE = {"id": HID, "project_id": "p", "kind": "pre", "owner": "project", "fail_mode": "closed",
       "redact": False, "created_at": "t", "internals_hidden": False, "function_id": FID,
       "description": "", "created_by": "anna"}
HIDDEN = {"id": HID, "project_id": "p", "kind": "pre", "owner": "cloud", "fail_mode": "open",
          "redact": False, "created_at": "t", "internals_hidden": True}


def test_hook_create_pre_and_post(requests_mock, run):
    requests_mock.post(API + "/hooks", status_code=201, json={"hook": PRE})
    out = run(hooks.CreateHook, ["--pre", "--function", "guard", "-f", "json"])
    assert out["id"] == HID and out["kind"] == "pre" and out["fail_mode"] == "closed"
    assert requests_mock.last_request.json() == {"kind": "pre", "function": "guard"}

    post = dict(PRE, kind="post", redact=True, fail_mode="open")
    requests_mock.post(API + "/hooks", status_code=201, json={"hook": post})
    out = run(hooks.CreateHook, ["--post", "--function", "audit", "--alias", "live",
                                 "--fail-open", "--redact", "--project", "other",
                                 "--description", "d", "-f", "json"])
    assert out["redact"] is True
    assert requests_mock.last_request.json() == {
        "kind": "post", "function": "audit", "alias": "live", "fail_mode": "open",
        "redact": True, "project_id": "other", "description": "d"}
    run(hooks.CreateHook, ["--pre", "--function", "guard", "--function-version", "3",
                           "--fail-closed"])
    assert requests_mock.last_request.json() == {
        "kind": "pre", "function": "guard", "version": 3, "fail_mode": "closed"}


def test_hook_create_refuses_bad_combinations(run):
    with pytest.raises(SystemExit):
        run(hooks.CreateHook, ["--function", "f"])  # --pre or --post
    with pytest.raises(SystemExit):
        run(hooks.CreateHook, ["--pre", "--post", "--function", "f"])
    with pytest.raises(SystemExit):
        run(hooks.CreateHook, ["--pre", "--function", "f", "--fail-open", "--fail-closed"])
    with pytest.raises(SystemExit):
        run(hooks.CreateHook, ["--pre", "--function", "f", "--alias", "a",
                               "--function-version", "1"])
    with pytest.raises(exceptions.ValidationError, match="only a post hook may redact"):
        run(hooks.CreateHook, ["--pre", "--function", "f", "--redact"])


def test_hook_list_show_hidden_internals_and_delete(requests_mock, run):
    requests_mock.get(API + "/hooks", json={"hooks": [PRE, HIDDEN]})
    out = run(hooks.ListHook, ["--kind", "pre", "-f", "json"])
    assert [h["Owner"] for h in out] == ["project", "cloud"]
    assert out[1]["Function ID"] is None
    assert requests_mock.last_request.qs == {"kind": ["pre"]}
    requests_mock.get(API + "/hooks/" + HID, json={"hook": HIDDEN})
    out = run(hooks.ShowHook, [HID, "-f", "json"])
    assert out["internals_hidden"] is True and "function_id" not in out
    requests_mock.delete(API + "/hooks/" + HID, status_code=204)
    run(hooks.DeleteHook, [HID])
    assert requests_mock.last_request.method == "DELETE"


def test_hook_delete_reports_a_refusal(requests_mock, run):
    requests_mock.delete(API + "/hooks/" + HID, **error_body(
        403, "hook %s is the cloud's: only a cloud administrator may remove it" % HID))
    with pytest.raises(osc_exc.CommandError, match="failed to delete 1 of 1 hooks"):
        run(hooks.DeleteHook, [HID])

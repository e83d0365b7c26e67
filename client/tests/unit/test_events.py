"""Triggers, async invocation config and dead letters: the SDK and the osc commands."""

import pytest
from osc_lib import exceptions as osc_exc

from frescoclient import exceptions
from frescoclient.osc.v1 import events, triggers

from .conftest import API, error_body

FID = "9d4c3a0e-1111-4c2f-a0a1-1f5d8a0b8c11"
CRON = {"id": "5b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11", "name": "nightly", "type": "cron",
        "function_id": FID, "version": None, "alias": None, "input": {"job": "report"},
        "enabled": True, "description": "", "cron": "0 3 * * *", "timezone": "Europe/Paris",
        "next_run_at": "2026-12-01T02:00:00.000Z", "last_run_at": None, "last_error": None,
        "webhook_url": None, "has_secret": False, "rate_limit": -1, "sync": False,
        "project_id": "p", "created_at": "t", "updated_at": "t"}
HOOK = dict(CRON, id="6b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11", name="github", type="webhook",
            cron=None, timezone=None, next_run_at=None, has_secret=True, rate_limit=60,
            webhook_url="http://fresco.test:8900/v1/webhooks/" + "ab" * 32)


def test_trigger_create_cron_and_webhook(requests_mock, run):
    requests_mock.post(API + "/triggers", status_code=201, json={"trigger": CRON})
    out = run(triggers.CreateTrigger, [
        "nightly", "--function", "report", "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
        "--input", '{"job": "report"}', "--function-version", "2", "-f", "json"])
    assert out["next_run_at"] == CRON["next_run_at"] and out["input"] == {"job": "report"}
    assert requests_mock.last_request.json() == {
        "name": "nightly", "type": "cron", "function": "report", "cron": "0 3 * * *",
        "timezone": "Europe/Paris", "input": {"job": "report"}, "version": 2}
    requests_mock.post(API + "/triggers", status_code=201, json={"trigger": HOOK})
    out = run(triggers.CreateTrigger, [
        "github", "--function", "report", "--webhook", "--secret", "0123456789abcdef",
        "--rate-limit", "60", "--sync", "--alias", "live", "--disable", "-f", "json"])
    assert out["webhook_url"] == HOOK["webhook_url"] and out["has_secret"] is True
    assert requests_mock.last_request.json() == {
        "name": "github", "type": "webhook", "function": "report",
        "secret": "0123456789abcdef", "rate_limit": 60, "sync": True, "alias": "live",
        "enabled": False}


def test_trigger_create_notification(requests_mock, run):
    body = {"id": "t-3", "name": "on-boot", "type": "notification",
            "event_types": ["compute.instance.create.end", "volume.*"]}
    requests_mock.post(API + "/triggers", status_code=201, json={"trigger": body})
    out = run(triggers.CreateTrigger, [
        "on-boot", "--function", "report", "--event-type", "compute.instance.create.end",
        "--event-type", "volume.*", "-f", "json"])
    assert out["event_types"] == ["compute.instance.create.end", "volume.*"]
    assert requests_mock.last_request.json() == {
        "name": "on-boot", "type": "notification", "function": "report",
        "event_types": ["compute.instance.create.end", "volume.*"]}
    with pytest.raises(SystemExit):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--event-type", "x", "--webhook"])
    with pytest.raises(SystemExit):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--event-type", "x",
                                     "--cron", "* * * * *"])
    with pytest.raises(osc_exc.CommandError, match="are for --webhook"):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--event-type", "x",
                                     "--secret", "0123456789abcdef"])
    with pytest.raises(osc_exc.CommandError, match="is for --cron"):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--event-type", "x",
                                     "--timezone", "UTC"])
    requests_mock.patch(API + "/triggers/on-boot", json={"trigger": body})
    run(triggers.SetTrigger, ["on-boot", "--event-type", "image.*"])
    assert requests_mock.last_request.json() == {"event_types": ["image.*"]}


def test_trigger_create_refuses_mixed_or_missing_kinds(run):
    with pytest.raises(SystemExit):
        run(triggers.CreateTrigger, ["t", "--function", "f"])  # --cron or --webhook
    with pytest.raises(SystemExit):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--cron", "* * * * *", "--webhook"])
    with pytest.raises(SystemExit):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--webhook",
                                     "--function-version", "1", "--alias", "a"])
    with pytest.raises(osc_exc.CommandError, match="are for --webhook"):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--cron", "* * * * *",
                                     "--secret", "0123456789abcdef"])
    with pytest.raises(osc_exc.CommandError, match="--timezone is for --cron"):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--webhook", "--timezone", "UTC"])
    with pytest.raises(osc_exc.CommandError, match="must be a JSON object"):
        run(triggers.CreateTrigger, ["t", "--function", "f", "--webhook", "--input", "[1]"])


def test_trigger_list_show_set_delete(requests_mock, run):
    requests_mock.get(API + "/triggers", json={"triggers": [CRON, HOOK]})
    out = run(triggers.ListTrigger, ["--function", "report", "--type", "cron", "--limit", "5",
                                     "--sort-key", "name", "-f", "json"])
    assert [row["Name"] for row in out] == ["nightly", "github"]
    assert out[0]["Next Run At"] == CRON["next_run_at"] and out[1]["Webhook URL"]
    assert requests_mock.last_request.qs == {
        "function": ["report"], "type": ["cron"], "limit": ["5"], "sort_key": ["name"]}
    requests_mock.get(API + "/triggers/nightly", json={"trigger": CRON})
    assert run(triggers.ShowTrigger, ["nightly", "-f", "json"])["cron"] == "0 3 * * *"
    requests_mock.patch(API + "/triggers/github", json={"trigger": HOOK})
    run(triggers.SetTrigger, ["github", "--no-secret", "--async", "--disable", "--latest"])
    assert requests_mock.last_request.json() == {
        "secret": None, "sync": False, "enabled": False, "version": None, "alias": None}
    run(triggers.SetTrigger, ["github", "--rate-limit", "-1", "--enable"])
    assert requests_mock.last_request.json() == {"rate_limit": -1, "enabled": True}
    with pytest.raises(osc_exc.CommandError, match="nothing to change"):
        run(triggers.SetTrigger, ["github"])
    requests_mock.delete(API + "/triggers/nightly", status_code=204)
    requests_mock.delete(API + "/triggers/gone", **error_body(404, "trigger gone could not be found"))
    with pytest.raises(osc_exc.CommandError, match="failed to delete 1 of 2 triggers"):
        run(triggers.DeleteTrigger, ["nightly", "gone"])


def test_event_config_set_show_delete(requests_mock, run, fresco):
    config = {"function_id": FID, "max_attempts": 3, "max_event_age_s": 600,
              "on_success": "7b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11", "on_failure": None,
              "dead_letter": True, "updated_at": "t"}
    requests_mock.put(API + "/functions/report/event-config", json={"event_config": config})
    out = run(events.SetEventConfig, ["report", "--max-attempts", "3", "--max-event-age", "600",
                                      "--on-success", "archive", "--dead-letter", "-f", "json"])
    assert out["dead_letter"] is True and out["max_attempts"] == 3
    assert requests_mock.last_request.json() == {
        "max_attempts": 3, "max_event_age_s": 600, "on_success": "archive", "dead_letter": True}
    with pytest.raises(SystemExit):
        run(events.SetEventConfig, ["report", "--on-failure", "x", "--dead-letter"])
    with pytest.raises(exceptions.ValidationError):
        fresco.event_configs.set("report", on_failure="x", dead_letter=True)
    requests_mock.get(API + "/functions/report/event-config", json={"event_config": config})
    assert run(events.ShowEventConfig, ["report", "-f", "json"])["on_success"] == config["on_success"]
    requests_mock.delete(API + "/functions/report/event-config", status_code=204)
    run(events.DeleteEventConfig, ["report"])
    assert requests_mock.last_request.method == "DELETE"


def test_dead_letters_list_and_replay(requests_mock, run):
    letter = {"id": "8b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11", "function_id": FID,
              "execution_id": "9b0a3a2e-9a53-4c2f-a0a1-1f5d8a0b8c11", "event": {"order": 1},
              "status": "failed", "error": {"errorType": "ValueError"}, "attempts": 3,
              "created_at": "t"}
    requests_mock.get(API + "/functions/report/dead-letters", json={"dead_letters": [letter]})
    out = run(events.ListDeadLetter, ["report", "-f", "json"])
    assert out == [{"ID": letter["id"], "Execution ID": letter["execution_id"],
                    "Status": "failed", "Attempts": 3, "Created At": "t",
                    "Event": {"order": 1}}]
    requests_mock.post(API + "/functions/report/dead-letters/%s/replay" % letter["id"],
                       status_code=202, json={"execution": {"id": "e1", "status": "queued"}})
    requests_mock.post(API + "/functions/report/dead-letters/gone/replay",
                       **error_body(404, "dead letter gone could not be found"))
    out = run(events.ReplayDeadLetter, ["report", letter["id"], "-f", "json"])
    assert out == [{"Dead Letter": letter["id"], "Execution ID": "e1", "Status": "queued"}]
    with pytest.raises(osc_exc.CommandError, match="failed to replay 1 of 2 dead letters"):
        run(events.ReplayDeadLetter, ["report", letter["id"], "gone"])

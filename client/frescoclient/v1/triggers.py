"""Triggers: cron schedules, webhooks and OpenStack notifications that invoke a function of
the same project."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


class _Unset:
    def __repr__(self):
        return "UNSET"


UNSET = _Unset()
"""Pass as a field of ``update`` to send JSON null (clear a version, alias or secret)."""


class TriggerManager(Manager):
    path = "/triggers"

    def list(self, function=None, type=None, limit=None, marker=None, sort_key=None,
             sort_dir=None, all_projects=False, project_id=None):
        params, limit = list_params(limit=limit, marker=marker, sort_key=sort_key,
                                    sort_dir=sort_dir, all_projects=all_projects,
                                    project_id=project_id, function=function, type=type)
        return self.http.list(self.path, "triggers", params, limit)

    def get(self, trigger):
        return self.http.get_json("%s/%s" % (self.path, quote(trigger)))["trigger"]

    def create(self, name, function, type, cron=None, timezone=None, secret=None,
               rate_limit=None, sync=None, version=None, alias=None, input=None,
               description=None, enabled=None, event_types=None):
        if type not in ("cron", "webhook", "notification"):
            raise exceptions.ValidationError("type must be cron, webhook or notification")
        if type == "cron" and not cron:
            raise exceptions.ValidationError("a cron trigger needs a cron expression")
        if type == "notification" and not event_types:
            raise exceptions.ValidationError("a notification trigger needs event types")
        if version is not None and alias is not None:
            raise exceptions.ValidationError("give version or alias, not both")
        body = drop_none({"name": name, "type": type, "function": function, "cron": cron,
                          "timezone": timezone, "secret": secret, "rate_limit": rate_limit,
                          "sync": sync, "version": version, "alias": alias, "input": input,
                          "description": description, "enabled": enabled,
                          "event_types": list(event_types) if event_types else None})
        return self.http.request("POST", self.path, json=body).json()["trigger"]

    def update(self, trigger, **fields):
        """Any of version, alias, input, enabled, description, cron, timezone, secret,
        rate_limit, sync, event_types (None = unchanged; UNSET = clear)."""
        body = {k: (None if v is UNSET else v) for k, v in fields.items() if v is not None}
        if not body:
            raise exceptions.ValidationError("nothing to update")
        path = "%s/%s" % (self.path, quote(trigger))
        return self.http.request("PATCH", path, json=body).json()["trigger"]

    def delete(self, trigger):
        self.http.request("DELETE", "%s/%s" % (self.path, quote(trigger)))

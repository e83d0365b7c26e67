"""Per-project quotas and usage."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none
from frescoclient.v1.http import quote

QUOTAS = ("functions", "code_bytes", "memory_mb_max", "timeout_s_max",
          "concurrent_executions", "executions_per_minute", "queued_executions")


class QuotaManager(Manager):
    def get(self, project_id):
        return self.http.get_json("/quotas/%s" % quote(project_id))["quota"]

    def update(self, project_id, **limits):
        body = drop_none(limits)
        unknown = set(body) - set(QUOTAS)
        if unknown:
            raise exceptions.ValidationError("unknown quota(s): %s" % ", ".join(sorted(unknown)))
        if not body:
            raise exceptions.ValidationError("nothing to update")
        for name, value in body.items():
            if not isinstance(value, int) or value < -1:
                raise exceptions.ValidationError("quota %s must be an integer >= -1" % name)
        return self.http.request("PUT", "/quotas/%s" % quote(project_id), json=body).json()["quota"]

    def delete(self, project_id):
        self.http.request("DELETE", "/quotas/%s" % quote(project_id))


class UsageManager(Manager):
    def get(self, project_id=None):
        params = drop_none({"project_id": project_id})
        return self.http.get_json("/usage", params=params)["usage"]

"""Hooks: functions the platform chains around every invocation of a project (a pre hook
before the function, a post hook after it)."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


class HookManager(Manager):
    path = "/hooks"

    def list(self, kind=None, limit=None, marker=None, sort_key=None, sort_dir=None,
             all_projects=False, project_id=None):
        params, limit = list_params(limit=limit, marker=marker, sort_key=sort_key,
                                    sort_dir=sort_dir, all_projects=all_projects,
                                    project_id=project_id, kind=kind)
        return self.http.list(self.path, "hooks", params, limit)

    def get(self, hook):
        return self.http.get_json("%s/%s" % (self.path, quote(hook)))["hook"]

    def create(self, kind, function, version=None, alias=None, fail_mode=None, redact=None,
               description=None, project_id=None):
        if kind not in ("pre", "post"):
            raise exceptions.ValidationError("kind must be pre or post")
        if version is not None and alias is not None:
            raise exceptions.ValidationError("give version or alias, not both")
        if fail_mode is not None and fail_mode not in ("open", "closed"):
            raise exceptions.ValidationError("fail_mode must be open or closed")
        if redact and kind != "post":
            raise exceptions.ValidationError("only a post hook may redact")
        body = drop_none({"kind": kind, "function": function, "version": version,
                          "alias": alias, "fail_mode": fail_mode, "redact": redact,
                          "description": description, "project_id": project_id})
        return self.http.request("POST", self.path, json=body).json()["hook"]

    def delete(self, hook):
        self.http.request("DELETE", "%s/%s" % (self.path, quote(hook)))

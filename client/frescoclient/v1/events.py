"""A function's async invocation config (retries, destinations) and its dead letters."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


class EventConfigManager(Manager):
    def _path(self, function):
        return "/functions/%s/event-config" % quote(function)

    def get(self, function):
        return self.http.get_json(self._path(function))["event_config"]

    def set(self, function, max_attempts=None, max_event_age_s=None, on_success=None,
            on_failure=None, dead_letter=None):
        """Replaces the whole config: what is not given takes its default."""
        if on_failure is not None and dead_letter:
            raise exceptions.ValidationError("give on_failure or dead_letter, not both")
        body = drop_none({"max_attempts": max_attempts, "max_event_age_s": max_event_age_s,
                          "on_success": on_success, "on_failure": on_failure,
                          "dead_letter": dead_letter})
        return self.http.request("PUT", self._path(function), json=body).json()["event_config"]

    def delete(self, function):
        self.http.request("DELETE", self._path(function))


class DeadLetterManager(Manager):
    def _path(self, function):
        return "/functions/%s/dead-letters" % quote(function)

    def list(self, function, limit=None, marker=None, sort_dir=None):
        params, limit = list_params(limit=limit, marker=marker, sort_dir=sort_dir)
        return self.http.list(self._path(function), "dead_letters", params, limit)

    def replay(self, function, letter):
        """Queues the event again; returns the new execution."""
        path = "%s/%s/replay" % (self._path(function), quote(letter))
        return self.http.request("POST", path).json()["execution"]

"""Executions: the record of every invocation, and its log."""

import time

from frescoclient.v1.base import Manager, list_params
from frescoclient.v1.http import quote

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "timeout", "oom", "error"})


class ExecutionManager(Manager):
    path = "/executions"

    def list(self, function_id=None, status=None, **kwargs):
        params, limit = list_params(function_id=function_id, status=status, **kwargs)
        return self.http.list(self.path, "executions", params, limit)

    def get(self, execution_id):
        return self.http.get_json("%s/%s" % (self.path, quote(execution_id)))["execution"]

    def delete(self, execution_id):
        self.http.request("DELETE", "%s/%s" % (self.path, quote(execution_id)))

    def log(self, execution_id):
        resp = self.http.request("GET", "%s/%s/log" % (self.path, quote(execution_id)),
                                 headers={"Accept": "text/plain"})
        return resp.content.decode("utf-8", errors="replace")

    def follow_log(self, execution_id, interval=1.0, timeout=None, sleep=time.sleep,
                   clock=time.monotonic):
        """Yields new log text as it appears, until the execution reaches a terminal state.

        Returns (through StopIteration.value) the final execution. The log is re-read whole
        on each poll (the API serves it capped); only the part not yet yielded is yielded.
        """
        seen = ""
        deadline = None if timeout is None else clock() + timeout
        while True:
            # Status first: if it is terminal now, the log read after it is complete.
            execution = self.get(execution_id)
            text = self.log(execution_id)
            if text.startswith(seen):
                new = text[len(seen):]
            else:  # the capped log was rewritten; show it again whole
                new = text
            if new:
                yield new
            seen = text
            if execution.get("status") in TERMINAL_STATUSES:
                return execution
            if deadline is not None and clock() >= deadline:
                raise TimeoutError("execution %s still %s after %ss"
                                   % (execution_id, execution.get("status"), timeout))
            sleep(interval)

    def wait(self, execution_id, interval=1.0, timeout=60, sleep=time.sleep,
             clock=time.monotonic):
        """Polls until the execution reaches a terminal state; returns it."""
        deadline = clock() + timeout
        while True:
            execution = self.get(execution_id)
            if execution.get("status") in TERMINAL_STATUSES:
                return execution
            if clock() >= deadline:
                raise TimeoutError("execution %s still %s after %ss"
                                   % (execution_id, execution.get("status"), timeout))
            sleep(interval)

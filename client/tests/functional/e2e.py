#!/usr/bin/env python3
"""End-to-end test of the `openstack function` commands against a running Fresco.

HOW TO RUN
    client/tests/functional/run.sh          (creates the client venv, then runs this file)

It drives the real `openstack` binary (python-openstackclient with this plugin installed) as
a subprocess, against a real Fresco stack authenticated by a real Keystone. Nothing is mocked.

Environment (the usual OpenStack variables, for an ADMIN user):
    OS_AUTH_URL            Keystone v3 URL, e.g. http://127.0.0.1:5000/v3       (required)
    OS_USERNAME            an admin user                                         (required)
    OS_PASSWORD            its password                                          (required)
    OS_PROJECT_NAME        the admin's project, e.g. admin                       (required)
    OS_USER_DOMAIN_NAME    default Default
    OS_PROJECT_DOMAIN_NAME default Default
    OS_REGION_NAME         optional
    OS_FUNCTION_ENDPOINT   Fresco API URL (e.g. http://127.0.0.1:8900); when unset, the
                           endpoint of service type `function` in the catalog is used
    FRESCO_E2E_PYTHON_IMAGE  image of the Python runtime the test registers
                           (default fresco/python3:dev, what runtimes/build.sh builds)
    FRESCO_E2E_TIMEOUT     seconds to wait for an async execution (default 60)
    FRESCO_E2E_KEEP=1      leave the projects, users, runtime and function in place

Scenario: the admin registers a runtime and creates two projects with one member each;
project A creates a function from a directory, invokes it synchronously and asynchronously,
reads the async execution's log (--follow), lists its executions, publishes a version and an
alias and invokes them, downloads the code; project B sees none of A's function or
executions (404, like an unknown id); the admin sets A's functions quota to what A uses and A's
next create is refused (403 naming the quota); A deletes its function. Everything the test
made is removed at the end, also after a failure.

Prints PASS/FAIL per step and "N passed, N failed" last; exits 1 when a step failed, 2 when the
environment is incomplete (nothing is run then).
"""

import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

REQUIRED = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME")
TERMINAL = {"succeeded", "failed", "timeout", "oom", "error"}

HANDLER = '''\
import os


def handler(event, context):
    name = event.get("name", "world")
    print("e2e-log-marker greeting", name, flush=True)
    return {"greeting": "hello " + name, "answer": 42}
'''


class StepFailed(Exception):
    pass


class OpenStack:
    """Runs the `openstack` binary as one identity (a full OS_* environment of its own)."""

    def __init__(self, env, label):
        self.env = env
        self.label = label

    def run(self, *args, check=True, stdin=None):
        cmd = ["openstack"] + [str(a) for a in args]
        proc = subprocess.run(cmd, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=300)
        if check and proc.returncode != 0:
            raise StepFailed("%s: `%s` failed (%d): %s" % (
                self.label, " ".join(cmd[1:]), proc.returncode, proc.stderr.strip()[-500:]))
        return proc

    def json(self, *args, stdin=None):
        out = self.run(*(list(args) + ["-f", "json"]), stdin=stdin).stdout
        try:
            return json.loads(out)
        except ValueError as exc:
            raise StepFailed("%s: `%s` printed no json: %r" % (self.label, " ".join(args), out[:300])) from exc

    def fails(self, *args, expect=None):
        """The command must fail; its stderr must contain every string in `expect`."""
        proc = self.run(*args, check=False)
        if proc.returncode == 0:
            raise StepFailed("%s: `%s` succeeded but should have failed" % (self.label, " ".join(args)))
        for text in expect or ():
            if text not in proc.stderr:
                raise StepFailed("%s: `%s` failed without %r in: %s" % (
                    self.label, " ".join(args), text, proc.stderr.strip()[-500:]))
        if "Request-ID: req-" not in proc.stderr:
            raise StepFailed("%s: the error of `%s` does not carry the request id: %s" % (
                self.label, " ".join(args), proc.stderr.strip()[-300:]))
        return proc.stderr


def _when(timestamp):
    """An RFC 3339 timestamp as a datetime (the API writes UTC with a Z)."""
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def expect(cond, message):
    if not cond:
        raise StepFailed(message)


def eventually(check, timeout=90.0, interval=0.5):
    """Retries `check` until it stops raising StepFailed (sync executions are recorded off the
    invocation path, in batches, so they may show up a moment after the result). The deadline
    is generous: on a loaded 2-core machine a moment can be long; success returns at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except StepFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def base_env():
    env = {k: v for k, v in os.environ.items()}
    env.setdefault("OS_USER_DOMAIN_NAME", "Default")
    env.setdefault("OS_PROJECT_DOMAIN_NAME", "Default")
    env.setdefault("OS_IDENTITY_API_VERSION", "3")
    for key in ("OS_CLOUD", "OS_TOKEN", "OS_PROJECT_ID", "OS_TENANT_NAME", "OS_TENANT_ID",
                "OS_AUTH_TYPE", "OS_SYSTEM_SCOPE", "OS_DOMAIN_NAME", "OS_DOMAIN_ID"):
        env.pop(key, None)
    return env


def user_env(base, username, password, project):
    env = dict(base)
    env.update(OS_USERNAME=username, OS_PASSWORD=password, OS_PROJECT_NAME=project,
               OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default")
    return env


class Scenario:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.tag = "e2e%s" % secrets.token_hex(3)
        base = base_env()
        self.admin = OpenStack(base, "admin")
        self.base = base
        self.image = os.environ.get("FRESCO_E2E_PYTHON_IMAGE", "fresco/python3:dev")
        self.timeout = float(os.environ.get("FRESCO_E2E_TIMEOUT", "60"))
        self.runtime = "%s-python" % self.tag
        self.fn = "%s-hello" % self.tag
        self.s = {}  # what the steps made
        self.tmp = tempfile.mkdtemp(prefix="fresco-e2e-")
        self.cleanups = []

    def step(self, name, func):
        try:
            detail = func()
        except (StepFailed, subprocess.TimeoutExpired, KeyError, IndexError, TypeError) as exc:
            self.failed += 1
            print("FAIL  %s: %s" % (name, exc), flush=True)
            raise
        self.passed += 1
        print("PASS  %s%s" % (name, (" (%s)" % detail) if detail else ""), flush=True)

    # ---- setup
    def make_runtime(self):
        rt = self.admin.json("function", "runtime", "create", self.runtime, "--image", self.image,
                             "--kind", "python")
        self.cleanups.append(lambda: self.admin.run("function", "runtime", "delete", rt["id"], check=False))
        expect(rt["name"] == self.runtime and rt["kind"] == "python", "runtime create returned %r" % rt)
        shown = self.admin.json("function", "runtime", "show", self.runtime)
        expect(shown["id"] == rt["id"], "runtime show by name returned another id")
        return "runtime %s, image %s" % (rt["id"], self.image)

    def make_projects(self):
        for who in ("a", "b"):
            project = "%s-project-%s" % (self.tag, who)
            user = "%s-user-%s" % (self.tag, who)
            password = "pw-" + secrets.token_hex(12)
            pid = self.admin.json("project", "create", project, "--domain", "Default")["id"]
            self.cleanups.append(lambda p=pid: self.admin.run("project", "delete", p, check=False))
            uid = self.admin.json("user", "create", user, "--domain", "Default",
                                  "--password=" + password)["id"]
            self.cleanups.append(lambda u=uid: self.admin.run("user", "delete", u, check=False))
            self.admin.run("role", "add", "member", "--user", uid, "--project", pid)
            self.s[who] = {"project_id": pid,
                           "os": OpenStack(user_env(self.base, user, password, project), "project " + who)}
        return "projects %s, %s" % (self.s["a"]["project_id"], self.s["b"]["project_id"])

    # ---- project A
    def create_function(self):
        code = os.path.join(self.tmp, "code")
        os.makedirs(code)
        with open(os.path.join(code, "main.py"), "w") as f:
            f.write(HANDLER)
        a = self.s["a"]["os"]
        fn = a.json("function", "create", self.fn, "--runtime", self.runtime, "--code-dir", code,
                    "--memory", "128", "--timeout", "10", "--env", "E2E=1")
        self.s["fn"] = fn
        self.cleanups.insert(0, lambda: a.run("function", "delete", fn["id"], check=False))
        expect(fn["name"] == self.fn, "create returned name %r" % fn.get("name"))
        expect(fn["project_id"] == self.s["a"]["project_id"], "function owned by %r" % fn.get("project_id"))
        expect((fn.get("code") or {}).get("format") == "zip", "code is %r" % fn.get("code"))
        by_id = a.json("function", "show", fn["id"])
        expect(by_id["name"] == self.fn, "show by id returned %r" % by_id.get("name"))
        return "function %s" % fn["id"]

    def invoke_sync(self):
        a = self.s["a"]["os"]
        out = a.json("function", "invoke", self.fn, "--data", '{"name": "alice"}')
        expect(out["status"] == "succeeded", "sync status %r, result %r" % (out.get("status"), out.get("result")))
        expect(out["result"] == {"greeting": "hello alice", "answer": 42}, "sync result %r" % out["result"])
        expect(out["execution_id"], "no execution id")
        self.s["sync_exec"] = out["execution_id"]
        # stdin works too
        out = a.json("function", "invoke", self.fn, "--data-file", "-", stdin='{"name": "stdin"}')
        expect(out["result"].get("greeting") == "hello stdin", "stdin result %r" % out["result"])
        return "execution %s in %s ms" % (self.s["sync_exec"], out.get("duration_ms"))

    def invoke_async(self):
        a = self.s["a"]["os"]
        ex = a.json("function", "invoke", self.fn, "--async", "--data", '{"name": "bob"}')
        expect(ex.get("id") and ex.get("is_async") is True, "async invoke returned %r" % ex)
        expect(ex["status"] in ("queued", "running", "succeeded"), "async status %r" % ex["status"])
        self.s["async_exec"] = ex["id"]
        deadline = time.monotonic() + self.timeout
        while True:
            ex = a.json("function", "execution", "show", ex["id"])
            if ex["status"] in TERMINAL or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(ex["status"] == "succeeded", "async execution ended %r: %r" % (ex["status"], ex.get("error")))
        result = ex["result"]
        if isinstance(result, str):
            result = json.loads(result)
        expect(result == {"greeting": "hello bob", "answer": 42}, "async result %r" % ex["result"])
        return "execution %s" % ex["id"]

    def read_log(self):
        a = self.s["a"]["os"]
        proc = a.run("function", "execution", "log", "show", self.s["async_exec"], "--follow",
                     "--interval", "0.5", "--wait-timeout", str(self.timeout))
        expect("e2e-log-marker greeting bob" in proc.stdout, "log was %r" % proc.stdout[-300:])

        def sync_log():
            proc = a.run("function", "execution", "log", "show", self.s["sync_exec"])
            expect("e2e-log-marker greeting alice" in proc.stdout, "sync log was %r" % proc.stdout[-300:])
        eventually(sync_log)
        return None

    def list_executions(self):
        a = self.s["a"]["os"]

        def both_listed():
            rows = a.json("function", "execution", "list", "--function", self.fn)
            ids = {r["ID"] for r in rows}
            expect({self.s["sync_exec"], self.s["async_exec"]} <= ids, "executions listed: %r" % ids)
            return rows
        rows = eventually(both_listed)
        expect(all(r["Function ID"] == self.s["fn"]["id"] for r in rows), "foreign executions listed")
        # Newest first by default; --sort-dir asc for oldest first.
        created = [_when(r["Created At"]) for r in rows]
        expect(created == sorted(created, reverse=True), "not newest first: %r" % created)
        limited = a.json("function", "execution", "list", "--function", self.fn, "--limit", "1")
        expect(len(limited) == 1, "--limit 1 listed %d" % len(limited))
        expect(limited[0]["ID"] == rows[0]["ID"], "--limit 1 is not the newest: %r" % limited)
        oldest_first = a.json("function", "execution", "list", "--function", self.fn, "--sort-dir", "asc")
        listed = {r["ID"] for r in rows}  # a record still being written may show up only now
        expect([r["ID"] for r in oldest_first if r["ID"] in listed] == [r["ID"] for r in reversed(rows)],
               "--sort-dir asc is not the reverse order")
        return "%d executions, newest first" % len(rows)

    def versions_and_aliases(self):
        a = self.s["a"]["os"]
        v = a.json("function", "version", "create", self.fn, "--description", "first")
        expect(v["version"] == 1, "first version is %r" % v.get("version"))
        al = a.json("function", "alias", "create", self.fn, "live", "--function-version", "1")
        expect(al["version"] == 1, "alias points at %r" % al.get("version"))
        out = a.json("function", "invoke", self.fn, "--function-version", "1", "--data", '{"name": "v1"}')
        expect(out["result"].get("greeting") == "hello v1", "version invoke %r" % out)
        out = a.json("function", "invoke", self.fn, "--alias", "live", "--data", '{"name": "live"}')
        expect(out["result"].get("greeting") == "hello live", "alias invoke %r" % out)
        return None

    def download(self):
        a = self.s["a"]["os"]
        path = os.path.join(self.tmp, "down.zip")
        a.run("function", "download", self.fn, "--file", path)
        with zipfile.ZipFile(path) as zf:
            expect(zf.read("main.py").decode() == HANDLER, "downloaded main.py differs")
        return None

    # ---- project B
    def isolation(self):
        b = self.s["b"]["os"]
        fid = self.s["fn"]["id"]
        names = {r["Name"] for r in b.json("function", "list")}
        expect(self.fn not in names, "project b lists project a's function")
        b.fails("function", "show", fid, expect=["could not be found", "HTTP 404"])
        b.fails("function", "show", self.fn, expect=["HTTP 404"])
        b.fails("function", "invoke", fid, expect=["HTTP 404"])
        b.fails("function", "execution", "show", self.s["sync_exec"], expect=["HTTP 404"])
        ids = {r["ID"] for r in b.json("function", "execution", "list")}
        expect(not ids & {self.s["sync_exec"], self.s["async_exec"]}, "project b lists a's executions")
        b.fails("function", "delete", fid, expect=["HTTP 404"])
        return None

    # ---- quotas
    def quota(self):
        a = self.s["a"]["os"]
        pid = self.s["a"]["project_id"]
        self.cleanups.insert(0, lambda: self.admin.run("function", "quota", "delete", pid, check=False))
        q = self.admin.json("function", "quota", "set", pid, "--functions", "1")
        expect(q["functions"] == 1, "quota set returned %r" % q)
        mine = a.json("function", "quota", "show")
        expect(mine["project_id"] == pid and mine["functions"] == 1 and mine["functions_in_use"] == 1,
               "quota show as project a: %r" % mine)
        a.fails("function", "create", self.fn + "-2", "--runtime", self.runtime, "--code-dir",
                os.path.join(self.tmp, "code"), expect=["HTTP 403", "functions"])
        names = {r["Name"] for r in a.json("function", "list")}
        expect(names == {self.fn}, "functions after the refused create: %r" % names)
        # A project may hold no more queued async executions than its quota: 0 stops them.
        q = self.admin.json("function", "quota", "set", pid, "--queued-executions", "0")
        expect(q["queued_executions"] == 0 and "queued_executions_in_use" in q,
               "quota set --queued-executions returned %r" % q)
        a.fails("function", "invoke", self.fn, "--async", "--data", "{}",
                expect=["HTTP 429", "queued_executions"])

        def usage_counted():
            usage = a.json("function", "usage", "show")
            expect(usage["executions"] >= 5, "usage counts %r executions" % usage.get("executions"))
        eventually(usage_counted)
        return None

    def delete(self):
        a = self.s["a"]["os"]
        a.run("function", "delete", self.fn)
        a.fails("function", "show", self.fn, expect=["HTTP 404"])
        # the execution records stay
        ex = eventually(lambda: a.json("function", "execution", "show", self.s["sync_exec"]))
        expect(ex["status"] == "succeeded", "execution record after delete: %r" % ex)
        return None

    def run(self):
        steps = [
            ("admin creates projects a and b with one member each", self.make_projects),
            ("admin creates a runtime", self.make_runtime),
            ("a: function create --code-dir, show by id", self.create_function),
            ("a: invoke synchronously (--data, stdin)", self.invoke_sync),
            ("a: invoke --async, poll until succeeded", self.invoke_async),
            ("a: execution log show (--follow) has the function's output", self.read_log),
            ("a: execution list --function (and --limit)", self.list_executions),
            ("a: version create, alias create, invoke both", self.versions_and_aliases),
            ("a: function download gives back the code", self.download),
            ("b: sees none of a's function or executions (404)", self.isolation),
            ("admin sets a's functions quota to 1; a's next create is refused", self.quota),
            ("a: function delete; show gives 404; execution records stay", self.delete),
        ]
        done = 0
        try:
            for name, func in steps:
                self.step(name, func)
                done += 1
        except Exception:  # noqa: BLE001 - a failed step stops the scenario; cleanup still runs
            pass
        finally:
            if not os.environ.get("FRESCO_E2E_KEEP"):
                for undo in self.cleanups:
                    try:
                        undo()
                    except Exception as exc:  # noqa: BLE001
                        print("cleanup: %s" % exc, file=sys.stderr)
                shutil.rmtree(self.tmp, ignore_errors=True)
        not_run = len(steps) - done - self.failed
        if not_run:
            print("not run after the failure: %d step(s)" % not_run)
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 0 if self.failed == 0 and not_run == 0 else 1


def main():
    missing = [k for k in REQUIRED if not os.environ.get(k)]
    if missing:
        print("fresco e2e: missing environment: %s (see the top of %s)" % (", ".join(missing), __file__),
              file=sys.stderr)
        return 2
    if not shutil.which("openstack"):
        print("fresco e2e: no openstack binary on PATH", file=sys.stderr)
        return 2
    proc = subprocess.run(["openstack", "function", "--help"], capture_output=True, text=True)
    if "function invoke" not in proc.stdout + proc.stderr:
        print("fresco e2e: the openstack binary on PATH has no function commands (plugin missing)",
              file=sys.stderr)
        return 2
    return Scenario().run()


if __name__ == "__main__":
    sys.exit(main())

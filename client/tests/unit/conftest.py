"""Fixtures: a real SDK client on a real keystoneauth adapter, HTTP answered by requests-mock.

Command tests run the real osc-lib command classes (parser, take_action, cliff formatters)
with a minimal stand-in for OpenStackClient's app object, which only carries the client and
the output streams.
"""

import argparse
import io
import json

import pytest
from keystoneauth1 import adapter as ksa_adapter
from keystoneauth1 import session as ksa_session

from frescoclient.v1.client import Client

ENDPOINT = "http://fresco.test:8900"
API = ENDPOINT + "/v1"
REQ_ID = "req-11111111-2222-3333-4444-555555555555"
PROJECT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fresco():
    sess = ksa_session.Session()
    adapter = ksa_adapter.Adapter(session=sess, service_type="function",
                                  endpoint_override=ENDPOINT)
    return Client(adapter=adapter)


class _ClientManager:
    def __init__(self, client):
        self.function = client
        self.auth_ref = None


class FakeApp:
    """What the command classes use of OpenStackClient's app: client_manager and stdout."""

    def __init__(self, client):
        self.client_manager = _ClientManager(client)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.options = argparse.Namespace(debug=False, verbose_level=1)


@pytest.fixture
def app(fresco):
    return FakeApp(fresco)


@pytest.fixture
def run(app):
    """run(CommandClass, argv) -> parsed stdout (json when -f json given, else text)."""

    def _run(cls, argv):
        cmd = cls(app, None)
        parser = cmd.get_parser("openstack test")
        parsed = parser.parse_args(argv)
        app.stdout.seek(0)
        app.stdout.truncate()
        rc = cmd.run(parsed)
        assert rc == 0
        out = app.stdout.getvalue()
        if "-f" in argv and argv[argv.index("-f") + 1] == "json":
            return json.loads(out)
        return out

    return _run


def error_body(code, message, title="Error"):
    return {"json": {"error": {"code": code, "title": title, "message": message}},
            "status_code": code, "headers": {"x-openstack-request-id": REQ_ID}}

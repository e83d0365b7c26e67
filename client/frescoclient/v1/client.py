"""The Fresco v1 SDK entry point.

    from keystoneauth1 import session
    from frescoclient.v1.client import Client

    fresco = Client(session=session.Session(auth=auth))
    fn = fresco.functions.create("hello", runtime="python3", package=zip_bytes)
    print(fresco.functions.invoke("hello", {"name": "x"}).result)
"""

from keystoneauth1 import adapter as ksa_adapter

from frescoclient import __version__
from frescoclient.v1.agents import AgentManager
from frescoclient.v1.aliases import AliasManager
from frescoclient.v1.events import DeadLetterManager, EventConfigManager
from frescoclient.v1.executions import ExecutionManager
from frescoclient.v1.functions import FunctionManager
from frescoclient.v1.http import HTTPClient
from frescoclient.v1.quotas import QuotaManager, UsageManager
from frescoclient.v1.runtimes import RuntimeManager
from frescoclient.v1.hooks import HookManager
from frescoclient.v1.triggers import TriggerManager
from frescoclient.v1.versions import VersionManager

SERVICE_TYPE = "function"


class Client:
    """Resource managers over one keystoneauth adapter.

    Give either a ready ``adapter`` or a keystoneauth ``session`` (and optionally
    ``endpoint_override``, ``interface``, ``region_name``, ``service_type``); the endpoint is
    looked up in the service catalog by service type ``function`` unless overridden.
    """

    def __init__(self, session=None, adapter=None, endpoint_override=None,
                 service_type=SERVICE_TYPE, interface=None, region_name=None, **kwargs):
        if adapter is None:
            if session is None:
                raise ValueError("a keystoneauth session or adapter is required")
            adapter = ksa_adapter.Adapter(
                session=session, service_type=service_type, interface=interface,
                region_name=region_name, endpoint_override=endpoint_override,
                client_name="python-frescoclient", client_version=__version__, **kwargs)
        self.adapter = adapter
        self.http = HTTPClient(adapter)
        self.functions = FunctionManager(self.http)
        self.versions = VersionManager(self.http)
        self.aliases = AliasManager(self.http)
        self.executions = ExecutionManager(self.http)
        self.runtimes = RuntimeManager(self.http)
        self.quotas = QuotaManager(self.http)
        self.usage = UsageManager(self.http)
        self.agents = AgentManager(self.http)
        self.triggers = TriggerManager(self.http)
        self.hooks = HookManager(self.http)
        self.event_configs = EventConfigManager(self.http)
        self.dead_letters = DeadLetterManager(self.http)

    def current_project_id(self):
        """The project the session's token is scoped to, or None (no auth, dev mode)."""
        try:
            return self.adapter.get_project_id()
        except Exception:  # noqa: BLE001 - any auth plugin may refuse; None means unknown
            return None

"""OpenStackClient plugin entry point (``openstack.cli.extension``: ``function``)."""

import logging
import os

from osc_lib import utils

LOG = logging.getLogger(__name__)

API_NAME = "function"
API_VERSION_OPTION = "os_function_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = {
    "1": "frescoclient.v1.client.Client",
    "1.0": "frescoclient.v1.client.Client",
}
SERVICE_TYPE = "function"


def _endpoint_override(instance):
    """--os-function-endpoint / OS_FUNCTION_ENDPOINT, or clouds.yaml function_endpoint_override."""
    cli_options = getattr(instance, "_cli_options", None)
    if cli_options is not None and hasattr(cli_options, "get_endpoint"):
        # openstacksdk's CloudRegion reads function_endpoint_override and function_endpoint.
        value = cli_options.get_endpoint(SERVICE_TYPE)
        if value:
            return value
    config = instance.get_configuration() if hasattr(instance, "get_configuration") else {}
    return config.get("function_endpoint_override") or config.get("function_endpoint") or None


def make_client(instance):
    """Returns a Fresco client on the session OpenStackClient built."""
    version = instance._api_version[API_NAME]
    client_class = utils.get_client_class(API_NAME, version, API_VERSIONS)
    endpoint = _endpoint_override(instance)
    LOG.debug("instantiating fresco client %s (endpoint override: %s)", client_class, endpoint)
    return client_class(
        session=instance.session,
        service_type=SERVICE_TYPE,
        interface=instance.interface,
        region_name=instance.region_name,
        endpoint_override=endpoint,
    )


def build_option_parser(parser):
    """Adds the global options of this plugin to the openstack parser."""
    parser.add_argument(
        "--os-function-api-version",
        metavar="<function-api-version>",
        default=utils.env("OS_FUNCTION_API_VERSION", default=DEFAULT_API_VERSION),
        help="Fresco API version, default=%s (Env: OS_FUNCTION_API_VERSION)" % DEFAULT_API_VERSION,
    )
    parser.add_argument(
        "--os-function-endpoint",
        metavar="<url>",
        default=os.environ.get("OS_FUNCTION_ENDPOINT"),
        help="Fresco API URL, bypassing the service catalog (Env: OS_FUNCTION_ENDPOINT)",
    )
    return parser

"""openstack function runtime create|list|show|set|delete"""

import logging

from osc_lib.command import command
from osc_lib import exceptions as osc_exc

from frescoclient.osc.v1 import common

LOG = logging.getLogger(__name__)


def _show(r):
    return common.show_all(r)


def _add_limits(parser):
    parser.add_argument("--description", metavar="<description>", help="Description")
    parser.add_argument("--memory-min", metavar="<mb>", type=common.int_at_least(1),
                        dest="memory_min_mb", help="Least memory a function may ask for, MB")
    parser.add_argument("--memory-max", metavar="<mb>", type=common.int_at_least(1),
                        dest="memory_max_mb", help="Most memory a function may ask for, MB")
    parser.add_argument("--timeout-max", metavar="<seconds>", type=common.int_at_least(1),
                        dest="timeout_max_s", help="Longest timeout a function may ask for")
    net = parser.add_mutually_exclusive_group()
    net.add_argument("--network", action="store_true", default=None, dest="network",
                     help="Give functions of this runtime network access")
    net.add_argument("--no-network", action="store_false", dest="network",
                     help="No network for functions of this runtime (the default)")
    pub = parser.add_mutually_exclusive_group()
    pub.add_argument("--public", action="store_true", default=None, dest="is_public",
                     help="Every project may use it (the default)")
    pub.add_argument("--private", action="store_false", dest="is_public",
                     help="Only its project may use it")


class CreateRuntime(command.ShowOne):
    _description = "Create a runtime (admin)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Runtime name, e.g. python3")
        parser.add_argument("--image", metavar="<image>", required=True,
                            help="Local container image of the runtime")
        parser.add_argument("--kind", metavar="<kind>", required=True,
                            choices=("python", "provided"), help="python or provided")
        parser.add_argument("--project", metavar="<project>",
                            help="Owner of a private runtime (name or id)")
        parser.add_argument("--project-domain", metavar="<domain>",
                            help="Domain the project belongs to")
        _add_limits(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        project_id = None
        if parsed_args.project:
            project_id = common.resolve_project(self.app, parsed_args.project,
                                                parsed_args.project_domain)
        return _show(client.runtimes.create(
            parsed_args.name, parsed_args.image, parsed_args.kind,
            description=parsed_args.description, is_public=parsed_args.is_public,
            project_id=project_id, network=parsed_args.network,
            memory_min_mb=parsed_args.memory_min_mb, memory_max_mb=parsed_args.memory_max_mb,
            timeout_max_s=parsed_args.timeout_max_s))


class ListRuntime(command.Lister):
    _description = "List runtimes"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--long", action="store_true", default=False, help="List more fields")
        common.add_paging_options(parser, sort_keys=("created_at", "name"))
        common.add_project_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.runtimes.list(**common.paging_kwargs(parsed_args, self.app))
        columns = ["id", "name", "kind", "image", "status", "is_public"]
        headers = ["ID", "Name", "Kind", "Image", "Status", "Public"]
        if parsed_args.long:
            columns += ["network", "memory_min_mb", "memory_max_mb", "timeout_max_s",
                        "project_id", "description"]
            headers += ["Network", "Memory Min MB", "Memory Max MB", "Timeout Max S",
                        "Project ID", "Description"]
        return common.table(items, columns, headers)


class ShowRuntime(command.ShowOne):
    _description = "Show a runtime"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("runtime", metavar="<runtime>", help="Runtime (name or id)")
        return parser

    def take_action(self, parsed_args):
        return _show(self.app.client_manager.function.runtimes.find(parsed_args.runtime))


class SetRuntime(command.Command):
    _description = "Change a runtime (admin)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("runtime", metavar="<runtime>", help="Runtime (name or id)")
        parser.add_argument("--name", metavar="<name>", help="New name")
        parser.add_argument("--image", metavar="<image>", help="New image")
        status = parser.add_mutually_exclusive_group()
        status.add_argument("--enable", action="store_const", const="available", dest="status",
                            help="Let new functions use it")
        status.add_argument("--disable", action="store_const", const="disabled", dest="status",
                            help="Refuse new functions on it")
        _add_limits(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        fields = {k: getattr(parsed_args, k) for k in (
            "name", "image", "status", "description", "is_public", "network", "memory_min_mb",
            "memory_max_mb", "timeout_max_s")}
        if all(v is None for v in fields.values()):
            raise osc_exc.CommandError("nothing to change: give at least one option")
        client.runtimes.update(parsed_args.runtime, **fields)


class DeleteRuntime(command.Command):
    _description = "Delete runtime(s) (admin)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("runtimes", metavar="<runtime>", nargs="+",
                            help="Runtime(s) to delete (name or id)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "runtime", parsed_args.runtimes,
                           client.runtimes.delete)

"""openstack function version create|list|show|delete"""

import logging

from osc_lib.command import command

from frescoclient.osc.v1 import common

LOG = logging.getLogger(__name__)


def _show(v):
    return common.show_all(v, first=("function_id", "version", "description"))


class CreateVersion(command.ShowOne):
    _description = "Publish an immutable version of a function as it is now"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--description", metavar="<description>", help="Description")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.versions.create(parsed_args.function, parsed_args.description))


class ListVersion(command.Lister):
    _description = "List the versions of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--limit", metavar="<n>", type=common.int_at_least(1),
                            help="Return at most <n> versions")
        parser.add_argument("--marker", metavar="<version>",
                            help="Start after this version number")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.versions.list(parsed_args.function, limit=parsed_args.limit,
                                     marker=parsed_args.marker)
        return common.table(
            items, ["version", "description", "runtime_id", "memory_mb", "timeout_s", "created_at"],
            ["Version", "Description", "Runtime ID", "Memory MB", "Timeout S", "Created At"])


class ShowVersion(command.ShowOne):
    _description = "Show a version of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("version", metavar="<version>", type=common.int_at_least(1),
                            help="Version number")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.versions.get(parsed_args.function, parsed_args.version))


class DeleteVersion(command.Command):
    _description = "Delete version(s) of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("versions", metavar="<version>", nargs="+",
                            type=common.int_at_least(1), help="Version number(s)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "version", parsed_args.versions,
                           lambda v: client.versions.delete(parsed_args.function, v))

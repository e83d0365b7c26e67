"""openstack function alias create|list|show|set|delete"""

import logging

from osc_lib.command import command
from osc_lib import exceptions as osc_exc

from frescoclient.osc.v1 import common
from frescoclient.v1.aliases import UNSET

LOG = logging.getLogger(__name__)


def _show(a):
    return common.show_all(a, first=("function_id", "name", "version", "second_version",
                                      "second_weight", "shadow_version", "shadow_percent",
                                      "description"))


def _weight(text):
    value = common.int_at_least(0)(text)
    if value > 100:
        import argparse
        raise argparse.ArgumentTypeError("must be at most 100")
    return value


class CreateAlias(command.ShowOne):
    _description = "Create an alias pointing at a version of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("name", metavar="<name>", help="Alias name")
        parser.add_argument("--function-version", metavar="<n>", type=common.int_at_least(1),
                            dest="function_version", required=True, help="Version it points at")
        parser.add_argument("--second-version", metavar="<n>", type=common.int_at_least(1),
                            help="Second version receiving part of the traffic (canary)")
        parser.add_argument("--second-weight", metavar="<percent>", type=_weight,
                            help="Percentage of invocations sent to --second-version (0-100)")
        parser.add_argument("--shadow-version", metavar="<n>", type=common.int_at_least(1),
                            help="Shadow version receiving a copy of the invocations, "
                                 "compared with the primary's answers")
        parser.add_argument("--shadow-percent", metavar="<percent>", type=_weight,
                            help="Percentage of invocations copied to --shadow-version "
                                 "(0-100, default 100)")
        parser.add_argument("--description", metavar="<description>", help="Description")
        return parser

    def take_action(self, parsed_args):
        if parsed_args.second_weight and parsed_args.second_version is None:
            raise osc_exc.CommandError("--second-weight needs --second-version")
        if parsed_args.shadow_percent and parsed_args.shadow_version is None:
            raise osc_exc.CommandError("--shadow-percent needs --shadow-version")
        client = self.app.client_manager.function
        return _show(client.aliases.create(
            parsed_args.function, parsed_args.name, parsed_args.function_version,
            second_version=parsed_args.second_version, second_weight=parsed_args.second_weight,
            description=parsed_args.description, shadow_version=parsed_args.shadow_version,
            shadow_percent=parsed_args.shadow_percent))


class ListAlias(command.Lister):
    _description = "List the aliases of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--limit", metavar="<n>", type=common.int_at_least(1),
                            help="Return at most <n> aliases")
        parser.add_argument("--marker", metavar="<name>", help="Start after this alias name")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.aliases.list(parsed_args.function, limit=parsed_args.limit,
                                    marker=parsed_args.marker)
        return common.table(
            items, ["name", "version", "second_version", "second_weight", "description"],
            ["Name", "Version", "Second Version", "Second Weight", "Description"])


class ShowAlias(command.ShowOne):
    _description = "Show an alias of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("name", metavar="<name>", help="Alias name")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.aliases.get(parsed_args.function, parsed_args.name))


class SetAlias(command.Command):
    _description = "Change what an alias points at"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("name", metavar="<name>", help="Alias name")
        parser.add_argument("--function-version", metavar="<n>", type=common.int_at_least(1),
                            dest="function_version", help="Version it points at")
        second = parser.add_mutually_exclusive_group()
        second.add_argument("--second-version", metavar="<n>", type=common.int_at_least(1),
                            help="Second version receiving part of the traffic (canary)")
        second.add_argument("--no-second-version", action="store_true", default=False,
                            help="Send all traffic to --version again")
        parser.add_argument("--second-weight", metavar="<percent>", type=_weight,
                            help="Percentage of invocations sent to the second version (0-100)")
        shadow = parser.add_mutually_exclusive_group()
        shadow.add_argument("--shadow-version", metavar="<n>", type=common.int_at_least(1),
                            help="Shadow version receiving a copy of the invocations, compared "
                                 "with the primary's answers (a new one restarts the counts)")
        shadow.add_argument("--no-shadow-version", action="store_true", default=False,
                            help="Stop copying invocations to a shadow version")
        parser.add_argument("--shadow-percent", metavar="<percent>", type=_weight,
                            help="Percentage of invocations copied to the shadow version (0-100)")
        parser.add_argument("--description", metavar="<description>", help="Description")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        fields = {"version": parsed_args.function_version,
                  "second_version": parsed_args.second_version,
                  "second_weight": parsed_args.second_weight,
                  "shadow_version": parsed_args.shadow_version,
                  "shadow_percent": parsed_args.shadow_percent,
                  "description": parsed_args.description}
        if parsed_args.no_second_version:
            fields["second_version"] = UNSET
            fields["second_weight"] = 0
        if parsed_args.no_shadow_version:
            if parsed_args.shadow_percent:
                raise osc_exc.CommandError("--shadow-percent cannot go with --no-shadow-version")
            fields["shadow_version"] = UNSET
            fields["shadow_percent"] = None
        if all(v is None for v in fields.values()):
            raise osc_exc.CommandError("nothing to change: give at least one option")
        client.aliases.update(parsed_args.function, parsed_args.name, **fields)


class ShowAliasComparison(command.ShowOne):
    _description = ("Show how an alias's shadow version compares with its primary: counts "
                    "since the last restart and the newest differing pairs")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("name", metavar="<name>", help="Alias name")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        c = client.aliases.comparison(parsed_args.function, parsed_args.name)
        return common.show_all(c, first=("function_id", "alias", "version", "shadow_version",
                                          "shadow_percent", "same", "different",
                                          "shadow_error", "primary_error", "skipped", "since"))


class DeleteAlias(command.Command):
    _description = "Delete alias(es) of a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("names", metavar="<name>", nargs="+", help="Alias name(s)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "alias", parsed_args.names,
                           lambda n: client.aliases.delete(parsed_args.function, n))

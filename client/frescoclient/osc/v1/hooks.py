"""openstack function hook create|list|show|delete"""

import logging

from osc_lib.command import command

from frescoclient.osc.v1 import common

LOG = logging.getLogger(__name__)


def _show(h):
    return common.show_all(h, first=("id", "kind", "owner", "project_id", "fail_mode", "redact",
                                      "function_id", "version", "alias", "internals_hidden"))


class CreateHook(command.ShowOne):
    _description = ("Attach a pre hook (runs on every invocation's event before the function, "
                    "may reject or rewrite it) or a post hook (receives the event, the result "
                    "and the execution's metadata after the answer) to your project; a cloud "
                    "administrator may attach one to any project (--project)")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--pre", dest="kind", action="store_const", const="pre",
                          help="A pre hook")
        kind.add_argument("--post", dest="kind", action="store_const", const="post",
                          help="A post hook")
        parser.add_argument("--function", metavar="<function>", required=True,
                            help="The hook's function (name or id)")
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--function-version", metavar="<n>", dest="function_version",
                            type=common.int_at_least(1), help="Run this version of it")
        target.add_argument("--alias", metavar="<alias>", help="Run the version this alias names")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--fail-open", dest="fail_mode", action="store_const", const="open",
                          help="When the hook fails, let the invocation through (the answer "
                               "says so in X-Hook-Failed-Open)")
        mode.add_argument("--fail-closed", dest="fail_mode", action="store_const",
                          const="closed",
                          help="When the hook fails, refuse the invocation (502; the default)")
        parser.add_argument("--redact", action="store_true", default=None,
                            help="A post hook that runs before the answer and may replace "
                                 "the result (adds its time to every invocation)")
        parser.add_argument("--project", metavar="<project-id>", dest="project_id",
                            help="Attach it to this project (cloud administrators)")
        parser.add_argument("--description", metavar="<description>", help="Description")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.hooks.create(
            parsed_args.kind, parsed_args.function, version=parsed_args.function_version,
            alias=parsed_args.alias, fail_mode=parsed_args.fail_mode, redact=parsed_args.redact,
            description=parsed_args.description, project_id=parsed_args.project_id))


class ListHook(command.Lister):
    _description = "List the hooks of your project"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--kind", metavar="<kind>", choices=("pre", "post"),
                            help="Only hooks of this kind")
        common.add_paging_options(parser, sort_keys=["created_at"])
        common.add_project_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.hooks.list(kind=parsed_args.kind,
                                  **common.paging_kwargs(parsed_args, self.app))
        return common.table(
            items, ["id", "kind", "owner", "fail_mode", "redact", "function_id"],
            ["ID", "Kind", "Owner", "Fail Mode", "Redact", "Function ID"])


class ShowHook(command.ShowOne):
    _description = "Show a hook"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("hook", metavar="<hook>", help="Hook id")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.hooks.get(parsed_args.hook))


class DeleteHook(command.Command):
    _description = "Detach hook(s)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("hooks", metavar="<hook>", nargs="+", help="Hook id(s)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "hook", parsed_args.hooks, client.hooks.delete)

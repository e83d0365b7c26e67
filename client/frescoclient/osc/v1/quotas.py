"""openstack function quota show|set|delete, openstack function usage show"""

from osc_lib.command import command
from osc_lib import exceptions as osc_exc

from frescoclient.osc.v1 import common
from frescoclient.v1.quotas import QUOTAS


def _project_arg(parser):
    parser.add_argument("project", metavar="<project>", nargs="?",
                        help="Project (name or id); default the current project")
    parser.add_argument("--project-domain", metavar="<domain>",
                        help="Domain the project belongs to")


def _project_id(app, parsed_args):
    if parsed_args.project:
        return common.resolve_project(app, parsed_args.project, parsed_args.project_domain)
    return common.current_project(app)


def _flatten(quota):
    """One row per quota: `functions` shows limit and in-use as 'limit' and 'functions_in_use'."""
    cols, values = ["project_id"], [quota.get("project_id")]
    for name in QUOTAS:
        entry = quota.get(name)
        if not isinstance(entry, dict):
            continue
        cols.append(name)
        values.append(entry.get("limit"))
        if "in_use" in entry:
            cols.append(name + "_in_use")
            values.append(entry.get("in_use"))
    for name in sorted(set(quota) - set(QUOTAS) - {"project_id"}):
        cols.append(name)
        values.append(common.JSONColumn(quota[name]))
    return tuple(cols), tuple(values)


class ShowQuota(command.ShowOne):
    _description = "Show a project's quotas and what it uses of them (-1 = unlimited)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _project_arg(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _flatten(client.quotas.get(_project_id(self.app, parsed_args)))


class SetQuota(command.ShowOne):
    _description = "Set a project's quotas (admin; -1 = unlimited)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("project", metavar="<project>", help="Project (name or id)")
        parser.add_argument("--project-domain", metavar="<domain>",
                            help="Domain the project belongs to")
        for name in QUOTAS:
            parser.add_argument("--" + name.replace("_", "-"), metavar="<n>", dest=name,
                                type=common.int_at_least(-1), help="Limit of %s" % name)
        return parser

    def take_action(self, parsed_args):
        limits = {name: getattr(parsed_args, name) for name in QUOTAS
                  if getattr(parsed_args, name) is not None}
        if not limits:
            raise osc_exc.CommandError("nothing to change: give at least one quota")
        client = self.app.client_manager.function
        return _flatten(client.quotas.update(_project_id(self.app, parsed_args), **limits))


class DeleteQuota(command.Command):
    _description = "Reset a project's quotas to the defaults (admin)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("project", metavar="<project>", help="Project (name or id)")
        parser.add_argument("--project-domain", metavar="<domain>",
                            help="Domain the project belongs to")
        return parser

    def take_action(self, parsed_args):
        self.app.client_manager.function.quotas.delete(_project_id(self.app, parsed_args))


class ShowUsage(command.ShowOne):
    _description = "Show a project's usage: executions, GB-seconds, executions by status"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--project", metavar="<project>",
                            help="Project (name or id; admin for another project)")
        parser.add_argument("--project-domain", metavar="<domain>",
                            help="Domain the project belongs to")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        project_id = None
        if parsed_args.project:
            project_id = common.resolve_project(self.app, parsed_args.project,
                                                parsed_args.project_domain)
        usage = client.usage.get(project_id)
        return common.show_all(usage, first=("project_id", "executions", "gb_seconds"))

"""openstack function execution list|show|delete, openstack function execution log show"""

import logging

from osc_lib.command import command
from osc_lib import exceptions as osc_exc

from frescoclient.osc.v1 import common
from frescoclient.v1.base import is_uuid

LOG = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed", "timeout", "oom", "error")


def _show(e):
    return common.show_all(e, first=("id", "function_id", "function_version", "alias", "status"))


class ListExecution(command.Lister):
    _description = "List executions, newest first"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--function", metavar="<function>",
                            help="Only executions of this function (name or id)")
        parser.add_argument("--status", metavar="<status>", choices=STATUSES,
                            help="Only executions in this status: %s" % ", ".join(STATUSES))
        parser.add_argument("--long", action="store_true", default=False, help="List more fields")
        # The API lists executions newest first unless told otherwise.
        common.add_paging_options(parser, sort_keys=("created_at",), default_dir="desc")
        common.add_project_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        kwargs = common.paging_kwargs(parsed_args, self.app)
        function_id = None
        if parsed_args.function:
            function_id = parsed_args.function
            if not is_uuid(function_id):
                # The filter takes an id; the API resolves names in paths only.
                function_id = client.functions.get(parsed_args.function)["id"]
        items = client.executions.list(function_id=function_id, status=parsed_args.status, **kwargs)
        columns = ["id", "function_id", "function_version", "status", "is_async", "duration_ms",
                   "created_at"]
        headers = ["ID", "Function ID", "Version", "Status", "Async", "Duration Ms", "Created At"]
        if parsed_args.long:
            columns += ["alias", "cold", "max_memory_mb", "attempts", "agent_id", "project_id",
                        "finished_at"]
            headers += ["Alias", "Cold", "Max Memory MB", "Attempts", "Agent ID", "Project ID",
                        "Finished At"]
        return common.table(items, columns, headers)


class ShowExecution(command.ShowOne):
    _description = "Show an execution"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("execution", metavar="<execution>", help="Execution id")
        return parser

    def take_action(self, parsed_args):
        return _show(self.app.client_manager.function.executions.get(parsed_args.execution))


class DeleteExecution(command.Command):
    _description = "Delete execution record(s)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("executions", metavar="<execution>", nargs="+", help="Execution id(s)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "execution", parsed_args.executions,
                           client.executions.delete)


class ShowExecutionLog(command.Command):
    _description = "Show the log (stdout and stderr) of an execution"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("execution", metavar="<execution>", help="Execution id")
        parser.add_argument("--follow", action="store_true", default=False,
                            help="Keep polling and print new output until the execution ends")
        parser.add_argument("--interval", metavar="<seconds>", type=float, default=1.0,
                            help="Seconds between polls with --follow (default 1)")
        parser.add_argument("--wait-timeout", metavar="<seconds>", type=float, default=None,
                            help="Give up --follow after this many seconds (default: never)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        out = self.app.stdout
        if not parsed_args.follow:
            out.write(client.executions.log(parsed_args.execution))
            out.flush()
            return
        if parsed_args.interval <= 0:
            raise osc_exc.CommandError("--interval must be positive")
        stream = client.executions.follow_log(parsed_args.execution,
                                              interval=parsed_args.interval,
                                              timeout=parsed_args.wait_timeout)
        try:
            while True:
                out.write(next(stream))
                out.flush()
        except StopIteration as done:
            execution = done.value or {}
        except TimeoutError as exc:
            raise osc_exc.CommandError(str(exc)) from exc
        LOG.info("execution %s ended: %s", parsed_args.execution, execution.get("status"))

"""openstack function event-config set|show|delete, openstack function dead-letter list|replay"""

import logging

from osc_lib import exceptions as osc_exc
from osc_lib.command import command

from frescoclient import exceptions
from frescoclient.osc.v1 import common

LOG = logging.getLogger(__name__)


def _show(c):
    return common.show_all(c, first=("function_id", "max_attempts", "max_event_age_s",
                                      "on_success", "on_failure", "dead_letter"))


class SetEventConfig(command.ShowOne):
    _description = ("Set a function's async invocation config (replaces it whole: options not "
                    "given take their defaults)")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--max-attempts", metavar="<n>", dest="max_attempts",
                            type=common.int_at_least(1),
                            help="Runs of an event when the function fails (1-10, default 1)")
        parser.add_argument("--max-event-age", metavar="<seconds>", dest="max_event_age",
                            type=common.int_at_least(1),
                            help="An event older than this is not run again")
        parser.add_argument("--on-success", metavar="<function>",
                            help="Invoke this function of the project with each result")
        failure = parser.add_mutually_exclusive_group()
        failure.add_argument("--on-failure", metavar="<function>",
                             help="Invoke this function of the project with each failure")
        failure.add_argument("--dead-letter", action="store_true", default=None,
                             help="Keep failed events in the function's dead-letter list")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.event_configs.set(
            parsed_args.function, max_attempts=parsed_args.max_attempts,
            max_event_age_s=parsed_args.max_event_age, on_success=parsed_args.on_success,
            on_failure=parsed_args.on_failure, dead_letter=parsed_args.dead_letter))


class ShowEventConfig(command.ShowOne):
    _description = "Show a function's async invocation config"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.event_configs.get(parsed_args.function))


class DeleteEventConfig(command.Command):
    _description = "Remove a function's async invocation config (back to the defaults)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        return parser

    def take_action(self, parsed_args):
        self.app.client_manager.function.event_configs.delete(parsed_args.function)


class ListDeadLetter(command.Lister):
    _description = "List a function's dead letters (failed async events)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        common.add_paging_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.dead_letters.list(parsed_args.function, limit=parsed_args.limit,
                                         marker=parsed_args.marker)
        return common.table(
            items, ["id", "execution_id", "status", "attempts", "created_at", "event"],
            ["ID", "Execution ID", "Status", "Attempts", "Created At", "Event"])


class ReplayDeadLetter(command.Lister):
    _description = "Replay dead letter(s): queue each event again"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("letters", metavar="<dead-letter>", nargs="+",
                            help="Dead letter id(s)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        rows, failed = [], 0
        for letter in parsed_args.letters:
            try:
                execution = client.dead_letters.replay(parsed_args.function, letter)
            except exceptions.ClientException as exc:
                failed += 1
                LOG.error("failed to replay dead letter %s: %s", letter, exc)
                continue
            rows.append({"dead_letter": letter, "execution_id": execution["id"],
                         "status": execution["status"]})
        if failed:
            raise osc_exc.CommandError("failed to replay %d of %d dead letters"
                                       % (failed, len(parsed_args.letters)))
        return common.table(rows, ["dead_letter", "execution_id", "status"],
                            ["Dead Letter", "Execution ID", "Status"])

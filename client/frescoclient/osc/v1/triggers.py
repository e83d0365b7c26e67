"""openstack function trigger create|list|show|set|delete"""

import json
import logging

from osc_lib import exceptions as osc_exc
from osc_lib.command import command

from frescoclient.osc.v1 import common
from frescoclient.v1.triggers import UNSET

LOG = logging.getLogger(__name__)


def _show(t):
    return common.show_all(t, first=("id", "name", "type", "function_id", "version", "alias",
                                      "enabled", "cron", "timezone", "next_run_at",
                                      "webhook_url", "has_secret", "rate_limit", "sync",
                                      "event_types"))


def _input(text):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise osc_exc.CommandError("--input must be a JSON object: %s" % exc)
    if not isinstance(value, dict):
        raise osc_exc.CommandError("--input must be a JSON object")
    return value


def _add_target_options(parser, clearable=False):
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--function-version", metavar="<n>", dest="function_version",
                        type=common.int_at_least(1), help="Run this version of the function")
    target.add_argument("--alias", metavar="<alias>", help="Run the version this alias names")
    if clearable:
        target.add_argument("--latest", action="store_true", default=False,
                            help="Run the function's latest state (clear version and alias)")


class CreateTrigger(command.ShowOne):
    _description = ("Create a trigger: a cron schedule (--cron), a webhook (--webhook) or "
                    "OpenStack notifications of your project (--event-type) that invoke a "
                    "function of your project")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Trigger name")
        parser.add_argument("--function", metavar="<function>", required=True,
                            help="Function to invoke (name or id)")
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--cron", metavar="<expression>",
                          help="Cron expression: 5 fields (minute hour day month weekday), "
                               "or 6 with seconds first")
        kind.add_argument("--webhook", action="store_true", default=False,
                          help="A webhook: outside systems POST to its URL without a token")
        kind.add_argument("--event-type", metavar="<pattern>", dest="event_types",
                          action="append",
                          help="Fire on your project's OpenStack notifications of this event "
                               "type ('*' matches anything: volume.*); repeat for more")
        parser.add_argument("--timezone", metavar="<zone>",
                            help="IANA time zone of the cron expression (default: UTC)")
        parser.add_argument("--secret", metavar="<secret>",
                            help="Webhook calls must carry X-Fresco-Signature: "
                                 "sha256=<HMAC-SHA256 of the body under this secret>")
        parser.add_argument("--rate-limit", metavar="<per-minute>", dest="rate_limit",
                            type=common.int_at_least(0),
                            help="Most webhook calls per minute (default: unlimited)")
        parser.add_argument("--sync", action="store_true", default=None,
                            help="Webhook calls wait for the function's result")
        _add_target_options(parser)
        parser.add_argument("--input", metavar="<json>",
                            help="A JSON object merged into every event")
        parser.add_argument("--description", metavar="<description>", help="Description")
        parser.add_argument("--disable", action="store_true", default=False,
                            help="Create it disabled")
        return parser

    def take_action(self, parsed_args):
        if parsed_args.cron is None and parsed_args.timezone:
            raise osc_exc.CommandError("--timezone is for --cron triggers")
        if parsed_args.webhook is False and (parsed_args.secret or parsed_args.sync
                                             or parsed_args.rate_limit is not None):
            raise osc_exc.CommandError("--secret, --rate-limit and --sync are for --webhook "
                                       "triggers")
        client = self.app.client_manager.function
        if parsed_args.cron is not None:
            kind = "cron"
        elif parsed_args.event_types:
            kind = "notification"
        else:
            kind = "webhook"
        return _show(client.triggers.create(
            parsed_args.name, parsed_args.function, kind,
            event_types=parsed_args.event_types,
            cron=parsed_args.cron, timezone=parsed_args.timezone, secret=parsed_args.secret,
            rate_limit=parsed_args.rate_limit, sync=parsed_args.sync,
            version=parsed_args.function_version, alias=parsed_args.alias,
            input=_input(parsed_args.input), description=parsed_args.description,
            enabled=False if parsed_args.disable else None))


class ListTrigger(command.Lister):
    _description = "List triggers"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--function", metavar="<function>",
                            help="Only the triggers of this function (name or id)")
        parser.add_argument("--type", metavar="<type>", choices=("cron", "webhook", "notification"),
                            help="Only triggers of this type")
        common.add_paging_options(parser, sort_keys=["created_at", "name"])
        common.add_project_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        items = client.triggers.list(function=parsed_args.function, type=parsed_args.type,
                                     **common.paging_kwargs(parsed_args, self.app))
        return common.table(
            items, ["id", "name", "type", "function_id", "enabled", "cron", "next_run_at",
                    "webhook_url"],
            ["ID", "Name", "Type", "Function ID", "Enabled", "Cron", "Next Run At",
             "Webhook URL"])


class ShowTrigger(command.ShowOne):
    _description = "Show a trigger"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("trigger", metavar="<trigger>", help="Trigger (name or id)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        return _show(client.triggers.get(parsed_args.trigger))


class SetTrigger(command.Command):
    _description = "Change a trigger"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("trigger", metavar="<trigger>", help="Trigger (name or id)")
        parser.add_argument("--cron", metavar="<expression>", help="New cron expression")
        parser.add_argument("--timezone", metavar="<zone>", help="New time zone")
        parser.add_argument("--event-type", metavar="<pattern>", dest="event_types",
                            action="append",
                            help="New event types of a notification trigger (replace the "
                                 "old ones); repeat for more")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--secret", metavar="<secret>", help="New webhook secret")
        secret.add_argument("--no-secret", action="store_true", default=False,
                            help="Webhook calls need no signature any more")
        parser.add_argument("--rate-limit", metavar="<per-minute>", dest="rate_limit",
                            type=common.int_at_least(-1),
                            help="Most webhook calls per minute (-1: unlimited)")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--sync", action="store_true", default=None,
                          help="Webhook calls wait for the function's result")
        mode.add_argument("--async", dest="sync", action="store_false",
                          help="Webhook calls are queued (answered 202)")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--enable", dest="enabled", action="store_true", default=None,
                           help="Enable the trigger")
        state.add_argument("--disable", dest="enabled", action="store_false",
                           help="Disable the trigger")
        _add_target_options(parser, clearable=True)
        parser.add_argument("--input", metavar="<json>",
                            help="A JSON object merged into every event")
        parser.add_argument("--description", metavar="<description>", help="Description")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        fields = {"cron": parsed_args.cron, "timezone": parsed_args.timezone,
                  "secret": UNSET if parsed_args.no_secret else parsed_args.secret,
                  "rate_limit": parsed_args.rate_limit, "sync": parsed_args.sync,
                  "enabled": parsed_args.enabled, "version": parsed_args.function_version,
                  "alias": parsed_args.alias, "input": _input(parsed_args.input),
                  "description": parsed_args.description,
                  "event_types": parsed_args.event_types}
        if parsed_args.latest:
            fields["version"] = UNSET
            fields["alias"] = UNSET
        if all(v is None for v in fields.values()):
            raise osc_exc.CommandError("nothing to change: give at least one option")
        client.triggers.update(parsed_args.trigger, **fields)


class DeleteTrigger(command.Command):
    _description = "Delete trigger(s)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("triggers", metavar="<trigger>", nargs="+",
                            help="Trigger(s) (name or id)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "trigger", parsed_args.triggers,
                           client.triggers.delete)

"""openstack function create|list|show|set|delete|download|invoke"""

import json
import logging
import os
import sys

from osc_lib.command import command
from osc_lib import exceptions as osc_exc

from frescoclient import packaging
from frescoclient.osc.v1 import common

LOG = logging.getLogger(__name__)

FUNCTION_COLUMNS = ("id", "name", "project_id", "runtime_id", "image", "handler", "memory_mb",
                    "timeout_s", "environment", "description", "code", "latest_version",
                    "created_at", "updated_at")


def _show_function(fn):
    cols = [c for c in FUNCTION_COLUMNS if c in fn]
    cols += sorted(c for c in fn if c not in cols)
    return common.show(fn, cols, {"environment": common.JSONColumn, "code": common.JSONColumn})


def _add_settings(parser, create):
    target = parser.add_mutually_exclusive_group(required=False)
    target.add_argument("--runtime", metavar="<runtime>",
                        help="Runtime the function runs in (name or id)")
    target.add_argument("--image", metavar="<image>",
                        help="Custom container image instead of a runtime")
    parser.add_argument("--handler", metavar="<handler>",
                        help="Entry point, e.g. main.handler (default main.handler)"
                        if create else "Entry point, e.g. main.handler")
    parser.add_argument("--memory", metavar="<mb>", type=common.int_at_least(1), dest="memory_mb",
                        help="Memory limit in MB" + (" (default 128)" if create else ""))
    parser.add_argument("--timeout", metavar="<seconds>", type=common.int_at_least(1),
                        dest="timeout_s",
                        help="Wall-clock timeout in seconds" + (" (default 3)" if create else ""))
    parser.add_argument("--env", metavar="<key=value>", action="append", default=[],
                        help="Environment variable for the function (repeat for more)")
    parser.add_argument("--description", metavar="<description>", help="Description")
    code = parser.add_mutually_exclusive_group(required=False)
    code.add_argument("--code-dir", metavar="<directory>",
                      help="Directory to package as the function's code (deterministic zip)")
    code.add_argument("--package", metavar="<file>",
                      help="Code archive to upload (zip or tar.gz)")


def _load_code(parsed_args):
    if parsed_args.code_dir:
        return packaging.zip_directory(parsed_args.code_dir), packaging.ZIP
    if parsed_args.package:
        return packaging.read_package(parsed_args.package)
    return None, None


class CreateFunction(command.ShowOne):
    _description = "Create a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Name of the new function")
        _add_settings(parser, create=True)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        if not parsed_args.runtime and not parsed_args.image:
            raise osc_exc.CommandError("give --runtime or --image")
        if parsed_args.runtime and not (parsed_args.code_dir or parsed_args.package):
            LOG.warning("function %s has no code yet; upload it with "
                        "'openstack function set --code-dir'", parsed_args.name)
        package, fmt = _load_code(parsed_args)
        env = common.parse_key_values(parsed_args.env, "--env")
        fn = client.functions.create(
            parsed_args.name, package=package, package_format=fmt,
            runtime=parsed_args.runtime, image=parsed_args.image, handler=parsed_args.handler,
            memory_mb=parsed_args.memory_mb, timeout_s=parsed_args.timeout_s,
            environment=env or None, description=parsed_args.description)
        return _show_function(fn)


class ListFunction(command.Lister):
    _description = "List functions"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--name", metavar="<name>", help="Only the function with this name")
        parser.add_argument("--runtime", metavar="<runtime>",
                            help="Only functions of this runtime (name or id)")
        parser.add_argument("--long", action="store_true", default=False,
                            help="List more fields")
        common.add_paging_options(parser, sort_keys=("created_at", "name"))
        common.add_project_options(parser)
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        kwargs = common.paging_kwargs(parsed_args, self.app)
        runtime_id = None
        if parsed_args.runtime:
            runtime_id = client.runtimes.find_id(parsed_args.runtime)
        items = client.functions.list(name=parsed_args.name, runtime_id=runtime_id, **kwargs)
        columns = ["id", "name", "runtime_id", "memory_mb", "timeout_s", "latest_version"]
        headers = ["ID", "Name", "Runtime ID", "Memory MB", "Timeout S", "Latest Version"]
        if parsed_args.long:
            columns += ["image", "handler", "project_id", "description", "created_at", "updated_at"]
            headers += ["Image", "Handler", "Project ID", "Description", "Created At", "Updated At"]
        return common.table(items, columns, headers)


class ShowFunction(command.ShowOne):
    _description = "Show a function"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        return parser

    def take_action(self, parsed_args):
        return _show_function(self.app.client_manager.function.functions.get(parsed_args.function))


class SetFunction(command.Command):
    _description = "Change a function's settings or code"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--name", metavar="<name>", help="New name")
        _add_settings(parser, create=False)
        parser.add_argument("--unset-env", metavar="<key>", action="append", default=[],
                            help="Remove this environment variable (repeat for more)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        fields = {
            "name": parsed_args.name, "runtime": parsed_args.runtime, "image": parsed_args.image,
            "handler": parsed_args.handler, "memory_mb": parsed_args.memory_mb,
            "timeout_s": parsed_args.timeout_s, "description": parsed_args.description,
        }
        env = common.parse_key_values(parsed_args.env, "--env")
        if env or parsed_args.unset_env:
            # The API replaces the whole map: start from the current one.
            current = dict(client.functions.get(parsed_args.function).get("environment") or {})
            current.update(env)
            for key in parsed_args.unset_env:
                current.pop(key, None)
            fields["environment"] = current
        package, fmt = _load_code(parsed_args)
        if package is None and not any(v is not None for v in fields.values()):
            raise osc_exc.CommandError("nothing to change: give at least one option")
        client.functions.update(parsed_args.function, package=package, package_format=fmt,
                                **fields)


class DeleteFunction(command.Command):
    _description = "Delete function(s), with their versions and aliases"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("functions", metavar="<function>", nargs="+",
                            help="Function(s) to delete (name or id)")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        common.delete_many(self.app, LOG, "function", parsed_args.functions,
                           client.functions.delete)


class DownloadFunction(command.Command):
    _description = "Download a function's code package"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        parser.add_argument("--file", metavar="<path>",
                            help="Where to write the archive ('-' for stdout); default "
                            "<function>.zip or <function>.tar.gz in the current directory")
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        data, fmt, _server_name = client.functions.download(parsed_args.function)
        path = parsed_args.file
        if path == "-":
            out = getattr(self.app.stdout, "buffer", None) or sys.stdout.buffer
            out.write(data)
            out.flush()
            return
        if not path:
            base = os.path.basename(parsed_args.function.rstrip("/")) or "function"
            path = "%s.%s" % (base, fmt)
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise osc_exc.CommandError("cannot write %s: %s" % (path, exc.strerror)) from exc
        LOG.info("wrote %d bytes to %s", len(data), path)


class InvokeFunction(command.ShowOne):
    _description = ("Invoke a function and show its result and execution id "
                    "(with --async: queue it and show the execution)")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("function", metavar="<function>", help="Function (name or id)")
        data = parser.add_mutually_exclusive_group()
        data.add_argument("--data", metavar="<json>",
                          help="The event, as JSON text (default {})")
        data.add_argument("--data-file", metavar="<file>",
                          help="Read the event (JSON) from a file, '-' for stdin")
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--function-version", metavar="<n>", type=common.int_at_least(1),
                            dest="function_version", help="Invoke this version")
        target.add_argument("--alias", metavar="<alias>", help="Invoke the version this alias names")
        parser.add_argument("--async", action="store_true", default=False, dest="is_async",
                            help="Queue the execution and return at once")
        return parser

    def _event(self, parsed_args):
        if parsed_args.data is not None:
            text, origin = parsed_args.data, "--data"
        elif parsed_args.data_file == "-":
            text, origin = sys.stdin.read(), "stdin"
        elif parsed_args.data_file:
            try:
                with open(parsed_args.data_file, encoding="utf-8") as f:
                    text = f.read()
            except OSError as exc:
                raise osc_exc.CommandError("cannot read %s: %s"
                                           % (parsed_args.data_file, exc.strerror)) from exc
            origin = parsed_args.data_file
        else:
            return "{}"
        try:
            json.loads(text)
        except ValueError as exc:
            raise osc_exc.CommandError("the event from %s is not valid json: %s" % (origin, exc)) from exc
        return text

    def take_action(self, parsed_args):
        client = self.app.client_manager.function
        res = client.functions.invoke(
            parsed_args.function, data=self._event(parsed_args),
            version=parsed_args.function_version, alias=parsed_args.alias,
            is_async=parsed_args.is_async)
        if res.is_async:
            return common.show_all(res.execution)
        columns = ("execution_id", "status", "duration_ms", "result")
        values = (res.execution_id, res.status, res.duration_ms, common.JSONColumn(res.result))
        if res.status and res.status != "succeeded":
            LOG.warning("execution %s finished with status %s", res.execution_id, res.status)
        return columns, values

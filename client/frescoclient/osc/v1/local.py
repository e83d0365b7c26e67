"""openstack function run-local: runs a function on this machine with `fresco-agent run-local`.

No Fresco service is involved (nor a Keystone token): the command finds the fresco-agent binary
(--agent-binary, else $FRESCO_AGENT_BINARY, else `fresco-agent` on PATH) and runs it with the
function's settings; the function runs in the runtime image through the same container spec,
Lambda Runtime API and shim as on the platform. Its result (JSON) goes to stdout, its log to
stderr; a function that does not succeed prints its error JSON and makes the command fail.
"""

import json
import os
import shutil
import subprocess
import sys

from osc_lib import exceptions as osc_exc
from osc_lib.command import command

from frescoclient.osc.v1 import common

AGENT_ENV = "FRESCO_AGENT_BINARY"


def find_agent(given=None):
    """The fresco-agent binary to run: the one given, $FRESCO_AGENT_BINARY, or PATH's."""
    path = given or os.environ.get(AGENT_ENV) or shutil.which("fresco-agent")
    if not path:
        raise osc_exc.CommandError(
            "cannot find fresco-agent: put it on PATH, set %s or give --agent-binary" % AGENT_ENV)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise osc_exc.CommandError("%s is not an executable file" % path)
    return path


class RunLocal(command.Command):
    _description = ("Run a function on this machine, as the platform runs it (fresco-agent "
                    "run-local: the same runtime image, container limits, Runtime API and shim; "
                    "needs root and Docker) and print its result and log")

    # Nothing of the cloud is used: no token is asked for.
    auth_required = False

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--runtime-image", metavar="<image>", required=True,
                            help="Runtime image, e.g. fresco/python3:dev")
        parser.add_argument("--runtime-kind", metavar="<kind>", choices=("python", "provided"),
                            help="python or provided (default: told by the image's name)")
        parser.add_argument("--handler", metavar="<handler>", required=True,
                            help="Handler, e.g. main.handler")
        code = parser.add_mutually_exclusive_group(required=True)
        code.add_argument("--code-dir", metavar="<dir>", help="Directory holding the code")
        code.add_argument("--package", metavar="<file>",
                          help="Code package (zip or tar.gz), as uploaded")
        data = parser.add_mutually_exclusive_group()
        data.add_argument("--data", metavar="<json>", help="The event, as JSON text (default {})")
        data.add_argument("--data-file", metavar="<file>",
                          help="Read the event (JSON) from a file, '-' for stdin")
        parser.add_argument("--name", metavar="<name>",
                            help="Function name the function sees (default local)")
        parser.add_argument("--memory", metavar="<mb>", type=common.int_at_least(16),
                            help="Memory in MB (default 128)")
        parser.add_argument("--timeout", metavar="<seconds>", type=common.int_at_least(1),
                            help="Timeout in seconds (default 3)")
        parser.add_argument("--env", metavar="<key=value>", action="append", default=[],
                            help="Environment variable (repeat the option for more)")
        parser.add_argument("--agent-binary", metavar="<path>",
                            help="The fresco-agent binary (default $%s, else PATH's)" % AGENT_ENV)
        parser.add_argument("--shim-path", metavar="<path>",
                            help="The fresco-shim binary (default $FRESCO_SHIM_PATH, else the "
                                 "agent's [agent] shim_path)")
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

    def argv(self, parsed_args):
        """The fresco-agent command line for these arguments."""
        env = common.parse_key_values(parsed_args.env, "--env")
        argv = [find_agent(parsed_args.agent_binary), "run-local",
                "--runtime-image", parsed_args.runtime_image,
                "--handler", parsed_args.handler,
                "--event", self._event(parsed_args)]
        if parsed_args.code_dir:
            argv += ["--code-dir", parsed_args.code_dir]
        else:
            argv += ["--package", parsed_args.package]
        for option, value in (("--runtime-kind", parsed_args.runtime_kind),
                              ("--name", parsed_args.name),
                              ("--memory-mb", parsed_args.memory),
                              ("--timeout-s", parsed_args.timeout),
                              ("--shim-path", parsed_args.shim_path)):
            if value is not None:
                argv += [option, str(value)]
        for key, value in env.items():
            argv += ["--env", "%s=%s" % (key, value)]
        return argv

    def take_action(self, parsed_args):
        argv = self.argv(parsed_args)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise osc_exc.CommandError("cannot run %s: %s" % (argv[0], exc.strerror)) from exc
        self.app.stderr.write(proc.stderr)
        self.app.stdout.write(proc.stdout)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:] or ["no message"]
            raise osc_exc.CommandError("fresco-agent run-local failed (status %d): %s"
                                       % (proc.returncode, last[0]))

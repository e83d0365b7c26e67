"""openstack function agent list"""

from osc_lib.command import command

from frescoclient.osc.v1 import common


class ListAgent(command.Lister):
    _description = "List compute agents and their capacity (admin)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--long", action="store_true", default=False, help="List more fields")
        return parser

    def take_action(self, parsed_args):
        items = self.app.client_manager.function.agents.list()
        columns = ["id", "host", "state", "memory_mb_total", "memory_mb_reserved", "cpus",
                   "running", "last_heartbeat"]
        headers = ["ID", "Host", "State", "Memory MB Total", "Memory MB Reserved", "CPUs",
                   "Running", "Last Heartbeat"]
        if parsed_args.long:
            columns += ["url", "warm"]
            headers += ["URL", "Warm"]
        return common.table(items, columns, headers)

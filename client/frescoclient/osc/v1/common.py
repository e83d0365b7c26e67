"""Helpers the command modules share: formatting, paging options, name resolution."""

import argparse
import json
import re

from cliff import columns as cliff_columns
from osc_lib import exceptions as osc_exc

from frescoclient import exceptions


class JSONColumn(cliff_columns.FormattableColumn):
    """Any JSON value: compact JSON text in tables, the value itself in json/yaml."""

    def human_readable(self):
        if isinstance(self._value, str):
            return self._value
        return json.dumps(self._value, sort_keys=True)

    def machine_readable(self):
        return self._value


def show(resource, columns, formatters=None):
    """(column names, values) of one resource for a ShowOne, in the given column order."""
    formatters = formatters or {}
    values = []
    for col in columns:
        value = resource.get(col)
        if col in formatters:
            value = formatters[col](value)
        values.append(value)
    return tuple(columns), tuple(values)


def show_all(resource, formatters=None, first=("id", "name")):
    """Every field of a resource, known first ones first, the rest sorted."""
    cols = [c for c in first if c in resource]
    cols += sorted(c for c in resource if c not in cols)
    fmt = {c: JSONColumn for c in resource if isinstance(resource[c], (dict, list))}
    fmt.update(formatters or {})
    return show(resource, cols, fmt)


def table(items, columns, headers=None, formatters=None):
    formatters = formatters or {}
    rows = []
    for item in items:
        row = []
        for col in columns:
            value = item.get(col)
            if col in formatters:
                value = formatters[col](value)
            elif isinstance(value, (dict, list)):
                value = JSONColumn(value)
            row.append(value)
        rows.append(tuple(row))
    return tuple(headers or columns), rows


def add_paging_options(parser, sort_keys=None, default_dir="asc"):
    parser.add_argument("--limit", metavar="<n>", type=_positive_int,
                        help="Return at most <n> items (pages are followed until then)")
    parser.add_argument("--marker", metavar="<id>",
                        help="Start after the item with this id")
    if sort_keys:
        parser.add_argument("--sort-key", metavar="<key>", choices=sort_keys,
                            help="Sort by one of: %s" % ", ".join(sort_keys))
        parser.add_argument("--sort-dir", metavar="<dir>", choices=("asc", "desc"),
                            help="Sort direction: asc or desc (default: %s)" % default_dir)


def add_project_options(parser):
    parser.add_argument("--all-projects", action="store_true", default=False,
                        help="List items of every project (admin only)")
    parser.add_argument("--project", metavar="<project>",
                        help="Only items of this project, name or id (admin only)")
    parser.add_argument("--project-domain", metavar="<domain>",
                        help="Domain the project belongs to (name or id)")


def paging_kwargs(parsed_args, app=None):
    kwargs = {"limit": parsed_args.limit, "marker": parsed_args.marker}
    for opt in ("sort_key", "sort_dir"):
        if getattr(parsed_args, opt, None):
            kwargs[opt] = getattr(parsed_args, opt)
    if getattr(parsed_args, "all_projects", False):
        kwargs["all_projects"] = True
    if getattr(parsed_args, "project", None):
        kwargs["project_id"] = resolve_project(app, parsed_args.project,
                                               getattr(parsed_args, "project_domain", None))
        kwargs["all_projects"] = True
    return kwargs


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def int_at_least(minimum):

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d" % minimum)
        return value
    return parse


_KEYSTONE_ID = re.compile(r"^[0-9a-fA-F]{32}$|^[0-9a-fA-F-]{36}$")


def resolve_project(app, project, domain=None):
    """A Keystone project id from a name or id (ids pass through untouched)."""
    if _KEYSTONE_ID.match(project):
        return project
    if app is None:
        return project
    from openstackclient.identity import common as identity_common
    try:
        return identity_common.find_project_id_sdk(
            app.client_manager.sdk_connection.identity, project, domain)
    except Exception as exc:  # noqa: BLE001 - any identity failure: say which project
        raise osc_exc.CommandError("cannot find project %s: %s" % (project, exc)) from exc


def current_project(app):
    """The id of the project the caller's token is scoped to."""
    project_id = None
    try:
        auth_ref = app.client_manager.auth_ref
        project_id = auth_ref.project_id if auth_ref else None
    except Exception:  # noqa: BLE001
        project_id = None
    if not project_id:
        project_id = app.client_manager.function.current_project_id()
    if not project_id:
        raise osc_exc.CommandError("cannot tell the current project; pass a project")
    return project_id


def parse_key_values(pairs, option):
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise osc_exc.CommandError("%s expects KEY=VALUE, got %r" % (option, pair))
        key, value = pair.split("=", 1)
        if not key:
            raise osc_exc.CommandError("%s expects KEY=VALUE, got %r" % (option, pair))
        result[key] = value
    return result


def delete_many(app, log, kind, names, delete):
    """Deletes each name, reporting every failure, failing at the end if any failed."""
    failed = 0
    for name in names:
        try:
            delete(name)
        except exceptions.ClientException as exc:
            failed += 1
            log.error("failed to delete %s %s: %s", kind, name, exc)
    if failed:
        raise osc_exc.CommandError("failed to delete %d of %d %ss" % (failed, len(names), kind))

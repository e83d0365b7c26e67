"""What every resource manager shares."""

import uuid


class Manager:
    def __init__(self, http):
        self.http = http


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def drop_none(mapping):
    return {k: v for k, v in mapping.items() if v is not None}


def list_params(limit=None, marker=None, sort_key=None, sort_dir=None, all_projects=False,
                project_id=None, **filters):
    params = dict(filters)
    params.update(marker=marker, sort_key=sort_key, sort_dir=sort_dir, project_id=project_id)
    if all_projects:
        params["all_projects"] = "true"
    return drop_none(params), limit

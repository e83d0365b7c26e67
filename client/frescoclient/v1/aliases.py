"""Function aliases: named pointers to a version, optionally splitting traffic."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


def _check_weight(weight, name="second_weight"):
    if weight is not None and not 0 <= weight <= 100:
        raise exceptions.ValidationError("%s must be between 0 and 100" % name)


class AliasManager(Manager):
    def _path(self, function):
        return "/functions/%s/aliases" % quote(function)

    def list(self, function, limit=None, marker=None):
        params, limit = list_params(limit=limit, marker=marker)
        return self.http.list(self._path(function), "aliases", params, limit)

    def get(self, function, name):
        return self.http.get_json("%s/%s" % (self._path(function), quote(name)))["alias"]

    def create(self, function, name, version, second_version=None, second_weight=None,
               description=None, shadow_version=None, shadow_percent=None):
        _check_weight(second_weight)
        _check_weight(shadow_percent, "shadow_percent")
        body = drop_none({"name": name, "version": version, "second_version": second_version,
                          "second_weight": second_weight, "description": description,
                          "shadow_version": shadow_version, "shadow_percent": shadow_percent})
        return self.http.request("POST", self._path(function), json=body).json()["alias"]

    def update(self, function, name, **fields):
        """Any of version, second_version, second_weight, shadow_version, shadow_percent,
        description (None = unchanged).

        To clear the canary, pass ``second_version=UNSET`` (sends JSON null); to clear the
        shadow, ``shadow_version=UNSET``.
        """
        _check_weight(fields.get("second_weight"))
        _check_weight(fields.get("shadow_percent"), "shadow_percent")
        body = {k: (None if v is UNSET else v) for k, v in fields.items() if v is not None}
        if not body:
            raise exceptions.ValidationError("nothing to update")
        path = "%s/%s" % (self._path(function), quote(name))
        return self.http.request("PATCH", path, json=body).json()["alias"]

    def comparison(self, function, name):
        """How the alias's shadow version compares with its primary: counts and sample."""
        path = "%s/%s/comparison" % (self._path(function), quote(name))
        return self.http.get_json(path)["comparison"]

    def delete(self, function, name):
        self.http.request("DELETE", "%s/%s" % (self._path(function), quote(name)))


class _Unset:
    def __repr__(self):
        return "UNSET"


UNSET = _Unset()

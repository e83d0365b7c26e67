"""Function aliases: named pointers to a version, optionally splitting traffic."""

from frescoclient import exceptions
from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


def _check_weight(weight):
    if weight is not None and not 0 <= weight <= 100:
        raise exceptions.ValidationError("second_weight must be between 0 and 100")


class AliasManager(Manager):
    def _path(self, function):
        return "/functions/%s/aliases" % quote(function)

    def list(self, function, limit=None, marker=None):
        params, limit = list_params(limit=limit, marker=marker)
        return self.http.list(self._path(function), "aliases", params, limit)

    def get(self, function, name):
        return self.http.get_json("%s/%s" % (self._path(function), quote(name)))["alias"]

    def create(self, function, name, version, second_version=None, second_weight=None,
               description=None):
        _check_weight(second_weight)
        body = drop_none({"name": name, "version": version, "second_version": second_version,
                          "second_weight": second_weight, "description": description})
        return self.http.request("POST", self._path(function), json=body).json()["alias"]

    def update(self, function, name, **fields):
        """Any of version, second_version, second_weight, description (None = unchanged).

        To clear the canary, pass ``second_version=UNSET`` (sends JSON null).
        """
        _check_weight(fields.get("second_weight"))
        body = {k: (None if v is UNSET else v) for k, v in fields.items() if v is not None}
        if not body:
            raise exceptions.ValidationError("nothing to update")
        path = "%s/%s" % (self._path(function), quote(name))
        return self.http.request("PATCH", path, json=body).json()["alias"]

    def delete(self, function, name):
        self.http.request("DELETE", "%s/%s" % (self._path(function), quote(name)))


class _Unset:
    def __repr__(self):
        return "UNSET"


UNSET = _Unset()

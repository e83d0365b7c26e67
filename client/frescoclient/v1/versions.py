"""Function versions: immutable snapshots of a function."""

from frescoclient.v1.base import Manager, drop_none, list_params
from frescoclient.v1.http import quote


class VersionManager(Manager):
    def _path(self, function):
        return "/functions/%s/versions" % quote(function)

    def list(self, function, limit=None, marker=None):
        params, limit = list_params(limit=limit, marker=marker)
        return self.http.list(self._path(function), "versions", params, limit)

    def get(self, function, version):
        return self.http.get_json("%s/%s" % (self._path(function), int(version)))["version"]

    def create(self, function, description=None):
        resp = self.http.request("POST", self._path(function),
                                 json=drop_none({"description": description}))
        return resp.json()["version"]

    def delete(self, function, version):
        self.http.request("DELETE", "%s/%s" % (self._path(function), int(version)))

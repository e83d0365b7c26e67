"""Compute agents (admin)."""

from frescoclient.v1.base import Manager, list_params


class AgentManager(Manager):
    def list(self, **kwargs):
        params, limit = list_params(**kwargs)
        return self.http.list("/agents", "agents", params, limit)

"""StackSync's REST API and OAuth endpoints inside an OpenStack Swift proxy."""

from stacksync_api.middleware import StackSyncApi, filter_factory

__all__ = ["StackSyncApi", "filter_factory"]

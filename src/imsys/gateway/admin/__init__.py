"""The gateway side of administration (seed 003 §5): configuration store, command handlers,
and the executor that runs verified commands (see ``context`` for how they fit together)."""

from __future__ import annotations

from imsys.gateway.admin.config_store import (
    ConfigItem,
    ConfigKind,
    ConfigReason,
    ConfigStore,
    ConfigStoreRejected,
    ItemState,
)
from imsys.gateway.admin.context import AdminContext, Handler
from imsys.gateway.admin.executor import AdminExecutor, default_handlers

__all__ = ["AdminContext", "AdminExecutor", "ConfigItem", "ConfigKind", "ConfigReason",
           "ConfigStore", "ConfigStoreRejected", "Handler", "ItemState", "default_handlers"]

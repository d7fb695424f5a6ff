"""Administration command handlers: see imsys.gateway.admin.context for the table of modules."""

from __future__ import annotations

from imsys.gateway.admin.context import HandlerTable

HANDLERS: HandlerTable = {}

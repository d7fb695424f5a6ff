"""Runs verified administration commands: one handler per command type, one result each.

``AdminExecutor.execute(command)`` never raises for a command's content: a handler's
:class:`~imsys.core.errors.Rejected` becomes a ``failed`` :class:`CommandResult` whose details
carry ``reason`` and ``message``, and the system log records every command (outcome, type, id;
never parameters, which may hold secrets). The handler runs inside one database transaction,
so a refused command leaves the configuration as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from imsys.core.errors import Rejected
from imsys.gateway.admin.context import AdminContext, Handler, HandlerTable
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.wire.command import Command, CommandResult, CommandType, ResultStatus

__all__ = ["AdminExecutor", "default_handlers"]

log = logging.getLogger(__name__)


def default_handlers() -> HandlerTable:
    """Every handler module's table, merged (a type claimed twice is a programming error)."""
    from imsys.gateway.admin import (
        admin_change_handlers,
        commissioning_handlers,
        device_handlers,
        firmware,
        key_handlers,
        monitoring_handlers,
        profile_handlers,
    )
    table: HandlerTable = {}
    for module in (commissioning_handlers, profile_handlers, device_handlers, key_handlers,
                   monitoring_handlers, firmware, admin_change_handlers):
        for command_type, handler in module.HANDLERS.items():
            if command_type in table:
                raise RuntimeError(f"{command_type} has two handlers")
            table[command_type] = handler
    return table


class AdminExecutor:
    def __init__(self, context: AdminContext,
                 handlers: Mapping[CommandType, Handler] | None = None) -> None:
        self.context = context
        self.handlers = dict(default_handlers() if handlers is None else handlers)

    def execute(self, command: Command) -> CommandResult:
        ctx = self.context
        handler = self.handlers.get(command.type)
        text = f"admin command {command.type.value} {command.command_id} (seq {command.sequence})"
        if handler is None:
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE, text + ": not supported",
                                   event=SystemEvent.CONFIGURATION_CHANGE)
            return self._result(command, ResultStatus.FAILED,
                                {"reason": "not-supported",
                                 "message": f"{command.type.value} is not supported"})
        try:
            with ctx.db.transaction():
                details = handler(ctx, command)
                ctx.logs.system.append(Level.INFO, Outcome.SUCCESS, text,
                                       event=SystemEvent.CONFIGURATION_CHANGE)
        except Rejected as exc:
            log.info("%s refused: %s", text, exc)
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE,
                                   f"{text}: {exc.reason.value}",
                                   event=SystemEvent.CONFIGURATION_CHANGE)
            return self._result(command, ResultStatus.FAILED,
                                {"reason": exc.reason.value, "message": exc.message})
        return self._result(command, ResultStatus.OK, details)

    def _result(self, command: Command, status: ResultStatus,
                details: Mapping[str, object]) -> CommandResult:
        return CommandResult(command.command_id, self.context.gateway_id, status,
                             self.context.clock.now().replace(microsecond=0), dict(details))

"""What an administration command acts on, and the shape of a command handler.

The gateway's :class:`AdminExecutor` (``imsys.gateway.admin.executor``) runs a handler for each
verified :class:`~imsys.wire.command.Command`. A handler is a plain function
``handler(context, command) -> details`` that changes the gateway through the
:class:`AdminContext` and returns the JSON object for the result's ``details``; it refuses bad
parameters with a :class:`~imsys.core.errors.Rejected` subclass (the executor turns that into a
signed ``failed`` result and a system-log entry). Handlers never read the wall clock (use
``context.clock``) and never verify signatures (the verifier did).

Handlers are grouped by module, each exporting ``HANDLERS: dict[CommandType, Handler]``:

| module | command groups |
| --- | --- |
| ``commissioning_handlers`` | ``commissioning.*`` (§2.3.3/§2.3.4 over the admin session) |
| ``profile_handlers`` | ``profile.*``, ``device.meter.*`` |
| ``device_handlers`` | ``device.cls.*``, ``device.display.*``, ``device.(un)assign``, |
| | ``consumer.*`` |
| ``key_handlers`` | ``key.*`` |
| ``monitoring_handlers`` | ``monitoring.*``, ``time.*``, ``wakeup.*`` |
| ``firmware`` | ``firmware.*`` |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imsys.core.clock import Clock
from imsys.gateway.admin.config_store import ConfigStore
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.store import Database

if TYPE_CHECKING:
    from imsys.gateway.commissioning import Commissioning
    from imsys.secmod.base import SecurityModule
    from imsys.wire.command import Command, CommandType

__all__ = ["AdminContext", "Handler"]


@dataclass
class AdminContext:
    """The gateway as an administration command sees it.

    ``secmod`` and ``commissioning`` are ``None`` only for a gateway run from PEM key files
    (the pre-commissioning test mode of ``imsys gateway run``); handlers that need them refuse
    then. ``extras`` is for adapters the process wires in (e.g. a firmware downloader) under
    documented names.
    """

    gateway_id: str
    db: Database
    logs: GatewayLogs
    clock: Clock
    config: ConfigStore
    state_dir: Path
    secmod: SecurityModule | None = None
    commissioning: Commissioning | None = None
    extras: dict[str, Any] = field(default_factory=dict)


#: ``handler(context, command) -> details`` (a JSON object for ``CommandResult.details``).
Handler = Callable[[AdminContext, "Command"], dict[str, Any]]
HandlerTable = dict["CommandType", Handler]

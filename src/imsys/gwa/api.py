"""The operator API of the GWA (HTTP on 127.0.0.1, OpenAPI at ``/openapi.json``, docs at
``/docs``): the fleet view, commands to one or many gateways, their status, wake-ups.

=======  ==============================  =================================================
method   path                            what
=======  ==============================  =================================================
GET      ``/api/v1/gateways``            fleet: phase, commissioning, last contact, missed
                                         contact intervals, alarms, pending commands
GET      ``/api/v1/gateways/{id}``       one gateway, its recent commands and alarm reports
PUT      ``/api/v1/gateways/{id}``       add/update: wake-up address, contact interval
POST     ``/api/v1/commands``            queue one command type for many gateways (a batch)
GET      ``/api/v1/commands/{id}``       status and verified result details of a command
GET      ``/api/v1/batches/{id}``        progress of a batch (for the CLI's progress bar)
POST     ``/api/v1/gateways/{id}/wakeup`` send the signed wake-up datagram
=======  ==============================  =================================================

The API has no authentication of its own: it binds to loopback only (the operator's host);
put an authenticating proxy in front for anything else.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from imsys.core.errors import UsageError
from imsys.gwa.db import CommandRow, CommandStatus, GatewayRow
from imsys.gwa.service import GwaRejected, GwaService
from imsys.gwa.wakeup import send_wakeup

__all__ = ["create_api"]

_FINAL = {CommandStatus.OK, CommandStatus.FAILED, CommandStatus.REFUSED,
          CommandStatus.UNANSWERED, CommandStatus.NOT_ISSUED}


class Alarms(BaseModel):
    errors: int
    warnings: int
    last_error_at: datetime | None


class GatewayView(BaseModel):
    gateway_id: str
    phase: str | None
    commissioning: str
    commissioning_detail: str | None
    firmware_version: str | None
    last_contact: datetime | None
    missed_intervals: int
    contact_interval_s: int
    alarms: Alarms
    pending: int
    wakeup_address: str | None


class CommandView(BaseModel):
    command_id: uuid.UUID
    gateway_id: str
    type: str
    origin: str
    batch: str | None
    status: str
    sequence: int | None
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    detail: str | None


class AlarmReport(BaseModel):
    reported_at: datetime
    errors: int
    warnings: int


class GatewayDetail(GatewayView):
    commands: list[CommandView]
    alarm_reports: list[AlarmReport]


class GatewayUpdate(BaseModel):
    wakeup_host: str | None = Field(None, max_length=253)
    wakeup_port: int | None = Field(None, ge=1, le=65535)
    contact_interval_s: int | None = Field(None, ge=60)
    #: an administrator change (seed 003 table 5): this GWA takes over a gateway another GWA
    #: commissioned – operator commands (steps 2.10–2.15) flow without set-up commands
    adopt: bool = False


class CommandRequest(BaseModel):
    gateways: list[str] = Field(..., min_length=1, max_length=100_000)
    type: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Enqueued(BaseModel):
    gateway_id: str
    command_id: uuid.UUID


class BatchView(BaseModel):
    batch: str
    total: int
    done: int
    by_status: dict[str, int]
    commands: list[Enqueued]


class WakeupSent(BaseModel):
    gateway_id: str
    address: str


def _gateway_view(service: GwaService, row: GatewayRow) -> dict[str, Any]:
    return {
        "gateway_id": row.gateway_id, "phase": row.phase,
        "commissioning": row.commissioning.value,
        "commissioning_detail": row.commissioning_detail,
        "firmware_version": row.firmware_version, "last_contact": row.last_contact,
        "missed_intervals": row.missed_intervals(service.clock.now()),
        "contact_interval_s": row.contact_interval_s,
        "alarms": {"errors": row.alarm_errors, "warnings": row.alarm_warnings,
                   "last_error_at": row.last_error_at},
        "pending": service.db.pending(row.gateway_id),
        "wakeup_address": None if row.wakeup_host is None
        else f"{row.wakeup_host}:{row.wakeup_port}",
    }


def _command_view(row: CommandRow) -> CommandView:
    return CommandView(command_id=row.command_id, gateway_id=row.gateway_id, type=row.type,
                       origin=row.origin, batch=row.batch, status=row.status.value,
                       sequence=row.sequence, created_at=row.created_at, sent_at=row.sent_at,
                       completed_at=row.completed_at, result=row.result, detail=row.detail)


def create_api(service: GwaService) -> FastAPI:
    """The operator API over ``service`` (serve it with uvicorn on 127.0.0.1)."""
    app = FastAPI(title="imsys GWA operator API", version="1",
                  description="Fleet view and commands of an imsys gateway administrator.")

    def gateway_or_404(gateway_id: str) -> GatewayRow:
        row = service.db.gateway(gateway_id)
        if row is None:
            raise HTTPException(404, f"unknown gateway {gateway_id}")
        return row

    @app.get("/api/v1/gateways", response_model=list[GatewayView])
    def gateways() -> list[dict[str, Any]]:
        return [_gateway_view(service, row) for row in service.db.gateways()]

    @app.get("/api/v1/gateways/{gateway_id}", response_model=GatewayDetail)
    def gateway(gateway_id: str) -> dict[str, Any]:
        row = gateway_or_404(gateway_id)
        commands = service.db.commands(gateway_id=gateway_id)[-100:]
        return {**_gateway_view(service, row),
                "commands": [_command_view(c) for c in commands],
                "alarm_reports": [AlarmReport(reported_at=at, errors=e, warnings=w)
                                  for at, e, w in service.db.alarms(gateway_id)]}

    @app.put("/api/v1/gateways/{gateway_id}", response_model=GatewayView)
    def update_gateway(gateway_id: str, update: GatewayUpdate) -> dict[str, Any]:
        service.db.ensure_gateway(gateway_id, service.clock.now())
        values = update.model_dump(exclude_none=True)
        if values.pop("adopt", False):
            service.adopt(gateway_id)
        if values:
            service.db.update_gateway(gateway_id, **values)
        return _gateway_view(service, gateway_or_404(gateway_id))

    @app.post("/api/v1/commands", response_model=BatchView, status_code=201)
    def enqueue(request: CommandRequest) -> BatchView:
        batch = str(uuid.uuid4())
        try:
            ids = service.enqueue(request.gateways, request.type, request.parameters,
                                  batch=batch)
        except GwaRejected as exc:
            raise HTTPException(400, f"{exc.reason.value}: {exc.message}") from None
        commands = [Enqueued(gateway_id=g, command_id=c)
                    for g, c in zip(request.gateways, ids, strict=True)]
        return BatchView(batch=batch, total=len(ids), done=0,
                         by_status={CommandStatus.QUEUED.value: len(ids)}, commands=commands)

    @app.get("/api/v1/commands/{command_id}", response_model=CommandView)
    def command(command_id: uuid.UUID) -> CommandView:
        row = service.db.command(command_id)
        if row is None:
            raise HTTPException(404, "unknown command")
        return _command_view(row)

    @app.get("/api/v1/batches/{batch}", response_model=BatchView)
    def batch(batch: uuid.UUID) -> BatchView:
        rows = service.db.commands(batch=str(batch), limit=100_000)
        if not rows:
            raise HTTPException(404, "unknown batch")
        counts = Counter(r.status.value for r in rows)
        return BatchView(batch=str(batch), total=len(rows),
                         done=sum(1 for r in rows if r.status in _FINAL),
                         by_status=dict(counts),
                         commands=[Enqueued(gateway_id=r.gateway_id, command_id=r.command_id)
                                   for r in rows])

    @app.post("/api/v1/gateways/{gateway_id}/wakeup", response_model=WakeupSent)
    def wakeup(gateway_id: str) -> WakeupSent:
        gateway_or_404(gateway_id)
        try:
            host, port = send_wakeup(service, gateway_id)
        except UsageError as exc:
            raise HTTPException(409, str(exc)) from None
        return WakeupSent(gateway_id=gateway_id, address=f"{host}:{port}")

    return app

"""The gateway's administered configuration: meters, consumers, devices, profiles.

Everything the administrator installs through commands lives here, one JSON document per
``(kind, item id)``, with a state (``installed`` or ``active``). It is the gateway's current
configuration, not evidence: documents are replaced and deleted (what was changed, by whom and
when is in the system log and the consumer logs). Every change bumps ``revision`` in the same
transaction, so the running process notices it and reloads what it derives from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imsys.core.errors import Rejected, UsageError
from imsys.gateway.store import Database

__all__ = ["ConfigItem", "ConfigKind", "ConfigReason", "ConfigStore", "ConfigStoreRejected",
           "ItemState"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
_DDL = [
    "CREATE TABLE gateway_config (kind TEXT NOT NULL, item_id TEXT NOT NULL, "
    "state TEXT NOT NULL CHECK (state IN ('installed', 'active')), document TEXT NOT NULL, "
    "PRIMARY KEY (kind, item_id)) WITHOUT ROWID",
    "CREATE TABLE gateway_config_revision (one INTEGER PRIMARY KEY CHECK (one = 1), "
    "revision INTEGER NOT NULL)",
    "INSERT INTO gateway_config_revision VALUES (1, 0)",
]


class ConfigKind(StrEnum):
    METER = "meter"  # MeterProfile.to_dict()
    CONSUMER = "consumer"
    CLS = "cls"
    DISPLAY = "display"
    COMMUNICATION_PROFILE = "communication-profile"
    EVALUATION_PROFILE = "evaluation-profile"  # EvaluationProfile.to_dict()
    KEY = "key"  # metadata of keys/certificates in the security module (never the secret)
    CERTIFICATE = "certificate"
    TIME_SERVICE = "time-service"
    WAKEUP = "wakeup"
    SETTING = "setting"


class ItemState(StrEnum):
    INSTALLED = "installed"
    ACTIVE = "active"


class ConfigReason(StrEnum):
    UNKNOWN_ITEM = "unknown-item"
    ALREADY_EXISTS = "already-exists"
    BAD_ID = "bad-id"


class ConfigStoreRejected(Rejected):
    """A configuration change that refers to a missing item or clashes with an existing one."""


@dataclass(frozen=True)
class ConfigItem:
    kind: ConfigKind
    item_id: str
    state: ItemState
    document: dict[str, Any]


class ConfigStore:
    """Transactional documents by kind (joins an enclosing ``Database.transaction``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("gateway_config", _DDL)

    @staticmethod
    def _check_id(item_id: str) -> None:
        if not isinstance(item_id, str) or not _ID.match(item_id):
            raise ConfigStoreRejected(ConfigReason.BAD_ID,
                                      f"item id must match {_ID.pattern}", item=str(item_id)[:64])

    def revision(self) -> int:
        row = self.db.connection.execute(
            "SELECT revision FROM gateway_config_revision").fetchone()
        return int(row[0])

    def _bump(self) -> None:
        self.db.connection.execute("UPDATE gateway_config_revision SET revision = revision + 1")

    def put(self, kind: ConfigKind, item_id: str, document: Mapping[str, Any], *,
            state: ItemState = ItemState.INSTALLED, replace: bool = True) -> ConfigItem:
        """Install (or, with ``replace``, overwrite) one document."""
        kind, state = ConfigKind(kind), ItemState(state)
        self._check_id(item_id)
        try:
            text = json.dumps(dict(document), sort_keys=True, separators=(",", ":"),
                              allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"configuration documents are JSON objects: {exc}") from None
        with self.db.transaction() as conn:
            exists = self.get(kind, item_id) is not None
            if exists and not replace:
                raise ConfigStoreRejected(ConfigReason.ALREADY_EXISTS,
                                          f"{kind.value} {item_id} exists", item=item_id)
            conn.execute("INSERT INTO gateway_config (kind, item_id, state, document) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (kind, item_id) DO UPDATE SET "
                         "state = excluded.state, document = excluded.document",
                         (kind.value, item_id, state.value, text))
            self._bump()
        return ConfigItem(kind, item_id, state, json.loads(text))

    def set_state(self, kind: ConfigKind, item_id: str, state: ItemState) -> ConfigItem:
        item = self.require(kind, item_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE gateway_config SET state = ? WHERE kind = ? AND item_id = ?",
                         (ItemState(state).value, item.kind.value, item_id))
            self._bump()
        return ConfigItem(item.kind, item_id, ItemState(state), item.document)

    def delete(self, kind: ConfigKind, item_id: str) -> ConfigItem:
        item = self.require(kind, item_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gateway_config WHERE kind = ? AND item_id = ?",
                         (item.kind.value, item_id))
            self._bump()
        return item

    def get(self, kind: ConfigKind, item_id: str) -> ConfigItem | None:
        kind = ConfigKind(kind)
        row = self.db.connection.execute(
            "SELECT state, document FROM gateway_config WHERE kind = ? AND item_id = ?",
            (kind.value, item_id)).fetchone()
        if row is None:
            return None
        return ConfigItem(kind, item_id, ItemState(row[0]), json.loads(row[1]))

    def require(self, kind: ConfigKind, item_id: str) -> ConfigItem:
        item = self.get(kind, item_id)
        if item is None:
            raise ConfigStoreRejected(ConfigReason.UNKNOWN_ITEM,
                                      f"no {ConfigKind(kind).value} {item_id!r}",
                                      item=str(item_id)[:64])
        return item

    def items(self, kind: ConfigKind, *, active_only: bool = False) -> list[ConfigItem]:
        kind = ConfigKind(kind)
        sql = "SELECT item_id, state, document FROM gateway_config WHERE kind = ?"
        if active_only:
            sql += " AND state = 'active'"
        rows = self.db.connection.execute(sql + " ORDER BY item_id", (kind.value,)).fetchall()
        return [ConfigItem(kind, r[0], ItemState(r[1]), json.loads(r[2])) for r in rows]

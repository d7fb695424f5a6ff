"""Value types shared by the SML messages (SML 1.04 §6; libsml ``sml_list.h``, ``sml_tree.h``).

Messages are frozen, slotted dataclasses (one module per message kind). The records that occur
many times per frame – :class:`ListEntry`, :class:`PeriodEntry`, :class:`ProfileHeaderEntry`,
:class:`ProfilePeriodEntry`, :class:`ValueEntry` – are ``typing.NamedTuple`` instead: equally
immutable and typed, but built about eight times faster, which the decoder needs to stay an order
of magnitude ahead of SmlLib (see ``docs/lmn.md``). Like any tuple they compare equal to a plain
tuple with the same items.

Values follow the SML grammar closely:

* ``Octet String`` → ``bytes``; ``Boolean`` → ``bool``; ``Integer8..64``/``Unsigned8..64`` → ``int``
  (the encoder picks the shortest encoding); an absent ``OPTIONAL`` field → ``None``.
* ``SML_Time`` → :class:`SecIndex`, :class:`Timestamp` or :class:`LocalTimestamp`.
* ``SML_Value`` → ``bool | bytes | int`` or an ``SML_Time`` (the 1.04 ``SML_ListType`` choice 1).
* ``SML_Unit`` → :class:`~imsys.lmn.sml.units.Unit` when the code has a name, else ``int``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any, NamedTuple

from imsys.lmn.sml.obis import Obis
from imsys.lmn.sml.units import Unit


def fast_init(cls: type) -> Callable[..., Any]:
    """A positional constructor for a frozen, slotted dataclass that skips ``__init__``.

    The decoders build objects from already-checked values. The object is made as an instance
    of a plain twin class with the same slots – a store to a slot attribute is the cheapest
    store CPython has – and then given its real class (``__class__`` assignment between types
    of the same layout). That is about four times as fast as the generated frozen ``__init__``
    and half again as fast as calling the slot descriptors' ``__set__``, which is what this
    falls back to if the interpreter refuses the class change.
    """
    names = [f.name for f in fields(cls)]
    args = ", ".join(names)
    twin = type(f"_{cls.__name__}Fields", (), {"__slots__": tuple(names)})
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin}
    body = "".join(f"    o.{n} = {n}\n" for n in names)
    exec(f"def make({args}):\n    o = new(twin)\n{body}    o.__class__ = cls\n    return o\n", ns)
    make: Callable[..., Any] = ns["make"]
    try:
        probe = make(*range(len(names)))
        ok = type(probe) is cls and [getattr(probe, n) for n in names] == list(range(len(names)))
    except TypeError:
        ok = False
    if not ok:  # pragma: no cover - CPython allows the class change for these layouts
        ns = {"new": object.__new__, "cls": cls}
        for k, name in enumerate(names):
            ns[f"s{k}"] = getattr(cls, name).__set__
        body = "".join(f"    s{k}(o, {n})\n" for k, n in enumerate(names))
        exec(f"def make({args}):\n    o = new(cls)\n{body}    return o\n", ns)
        make = ns["make"]
    make.__doc__ = f"Build a {cls.__name__} from its fields in order (no validation)."
    return make


@dataclass(frozen=True, slots=True)
class SecIndex:
    """``SML_Time`` choice 1: seconds since an arbitrary, meter-specific epoch (Unsigned32)."""

    value: int


@dataclass(frozen=True, slots=True)
class Timestamp:
    """``SML_Time`` choice 2: Unix time in seconds, UTC (Unsigned32)."""

    value: int

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.value, UTC)


@dataclass(frozen=True, slots=True)
class LocalTimestamp:
    """``SML_Time`` choice 3 (``SML_TimestampLocal``): Unix time, local and DST offsets (min)."""

    timestamp: int
    local_offset: int
    season_offset: int

    @property
    def datetime(self) -> datetime:
        tz = timezone(timedelta(minutes=self.local_offset + self.season_offset))
        return datetime.fromtimestamp(self.timestamp, tz)


SmlTime = SecIndex | Timestamp | LocalTimestamp
new_sec_index = fast_init(SecIndex)
new_timestamp = fast_init(Timestamp)
#: ``SML_Value``: boolean, octet string, (un)signed integer, or a time (``SML_ListType``)
SmlValue = bool | bytes | int | SecIndex | Timestamp | LocalTimestamp | None
TreePath = tuple[bytes, ...]


def scaled(value: SmlValue, scaler: int | None) -> int | float | SmlValue:
    """``value · 10^scaler`` for integers (exact decimal, then nearest float); else ``value``."""
    if isinstance(value, bool) or not isinstance(value, int) or not scaler:
        return value
    if scaler > 0:
        return value * 10**scaler
    return float(Decimal(value).scaleb(scaler))


class ListEntry(NamedTuple):
    """``SML_ListEntry``: one value of a ``GetList.Res`` (objName is usually a 6-byte OBIS code)."""

    obj_name: bytes
    status: int | None = None
    val_time: SmlTime | None = None
    unit: Unit | int | None = None
    scaler: int | None = None
    value: SmlValue = None
    value_signature: bytes | None = None

    @property
    def obis(self) -> Obis | None:
        """``obj_name`` as an :class:`Obis` code, ``None`` if it is not six bytes long."""
        return Obis.from_bytes(self.obj_name) if len(self.obj_name) == 6 else None

    @property
    def scaled_value(self) -> int | float | SmlValue:
        """The value with the scaler applied (integers only)."""
        return scaled(self.value, self.scaler)


class PeriodEntry(NamedTuple):
    """``SML_PeriodEntry`` (``GetProfileList.Res`` period list, ``SML_ProcParValue`` choice 2)."""

    obj_name: bytes
    unit: Unit | int
    scaler: int
    value: SmlValue
    value_signature: bytes | None = None

    @property
    def scaled_value(self) -> int | float | SmlValue:
        return scaled(self.value, self.scaler)


class ProfileHeaderEntry(NamedTuple):
    """``SML_ProfObjHeaderEntry`` of a ``GetProfilePack.Res``."""

    obj_name: bytes
    unit: Unit | int
    scaler: int


class ValueEntry(NamedTuple):
    """``SML_ValueEntry``: one value of a ``GetProfilePack.Res`` period."""

    value: SmlValue
    value_signature: bytes | None = None


class ProfilePeriodEntry(NamedTuple):
    """``SML_ProfObjPeriodEntry``: one registration period of a ``GetProfilePack.Res``."""

    val_time: SmlTime
    status: int
    values: tuple[ValueEntry, ...]
    period_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TupelEntry:
    """``SML_TupelEntry`` (``SML_ProcParValue`` choice 3): the pA/R1/R4 and mA/R2/R3 registers."""

    server_id: bytes
    sec_index: SmlTime
    status: int
    unit_pA: int
    scaler_pA: int
    value_pA: int
    unit_R1: int
    scaler_R1: int
    value_R1: int
    unit_R4: int
    scaler_R4: int
    value_R4: int
    signature_pA_R1_R4: bytes
    unit_mA: int
    scaler_mA: int
    value_mA: int
    unit_R2: int
    scaler_R2: int
    value_R2: int
    unit_R3: int
    scaler_R3: int
    value_R3: int
    signature_mA_R2_R3: bytes


class ProcParKind(IntEnum):
    """Choice tags of ``SML_ProcParValue``."""

    VALUE = 1
    PERIOD_ENTRY = 2
    TUPEL_ENTRY = 3
    TIME = 4
    LIST_ENTRY = 5


@dataclass(frozen=True, slots=True)
class ProcParValue:
    """``SML_ProcParValue``: a parameter value in a tree; ``kind`` says which choice it is."""

    kind: ProcParKind
    value: SmlValue | PeriodEntry | TupelEntry | ListEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """``SML_Tree``: a named parameter with an optional value and optional children.

    ``children=None`` is an absent child list; ``()`` an empty one (both exist on the wire).
    """

    parameter_name: bytes
    value: ProcParValue | None = None
    children: tuple[Tree, ...] | None = None


__all__ = [
    "ListEntry",
    "LocalTimestamp",
    "PeriodEntry",
    "ProcParKind",
    "ProcParValue",
    "ProfileHeaderEntry",
    "ProfilePeriodEntry",
    "SecIndex",
    "SmlTime",
    "SmlValue",
    "Timestamp",
    "Tree",
    "TreePath",
    "TupelEntry",
    "ValueEntry",
    "fast_init",
    "scaled",
]

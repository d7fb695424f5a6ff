"""DLMS/COSEM unit codes as used in ``SML_Unit`` (IEC 62056-62 table, facts.md §6)."""

from __future__ import annotations

from enum import IntEnum


class Unit(IntEnum):
    """The DLMS unit codes imsys names. Other codes decode as plain ``int``."""

    YEAR = 1
    MONTH = 2
    WEEK = 3
    DAY = 4
    HOUR = 5
    MINUTE = 6
    SECOND = 7
    DEGREE = 8
    DEGREE_CELSIUS = 9
    CURRENCY = 10
    METRE = 11
    METRE_PER_SECOND = 12
    CUBIC_METRE = 13
    CUBIC_METRE_CORRECTED = 14
    CUBIC_METRE_PER_HOUR = 15
    CUBIC_METRE_PER_HOUR_CORRECTED = 16
    CUBIC_METRE_PER_DAY = 17
    CUBIC_METRE_PER_DAY_CORRECTED = 18
    LITRE = 19
    KILOGRAM = 20
    NEWTON = 21
    NEWTON_METRE = 22
    PASCAL = 23
    BAR = 24
    JOULE = 25
    JOULE_PER_HOUR = 26
    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    COULOMB = 34
    VOLT = 35
    VOLT_PER_METRE = 36
    FARAD = 37
    OHM = 38
    OHM_METRE = 39
    WEBER = 40
    TESLA = 41
    AMPERE_PER_METRE = 42
    HENRY = 43
    HERTZ = 44
    ACTIVE_ENERGY_METER_CONSTANT = 45
    REACTIVE_ENERGY_METER_CONSTANT = 46
    APPARENT_ENERGY_METER_CONSTANT = 47
    VOLT_SQUARED_HOUR = 48
    AMPERE_SQUARED_HOUR = 49
    KILOGRAM_PER_SECOND = 50
    KELVIN = 52
    PERCENT = 56
    AMPERE_HOUR = 57
    WATT_HOUR_PER_CUBIC_METRE = 60
    JOULE_PER_CUBIC_METRE = 61
    DECIBEL_MILLIWATT = 70
    OTHER = 254
    COUNT = 255

    @property
    def symbol(self) -> str:
        """The printed symbol (``"Wh"``, ``"m³"``…)."""
        return _SYMBOLS.get(self, self.name.lower())


_SYMBOLS: dict[Unit, str] = {
    Unit.YEAR: "a", Unit.MONTH: "mo", Unit.WEEK: "wk", Unit.DAY: "d", Unit.HOUR: "h",
    Unit.MINUTE: "min", Unit.SECOND: "s", Unit.DEGREE: "°", Unit.DEGREE_CELSIUS: "°C",
    Unit.CURRENCY: "currency", Unit.METRE: "m", Unit.METRE_PER_SECOND: "m/s",
    Unit.CUBIC_METRE: "m³", Unit.CUBIC_METRE_CORRECTED: "m³", Unit.CUBIC_METRE_PER_HOUR: "m³/h",
    Unit.CUBIC_METRE_PER_HOUR_CORRECTED: "m³/h", Unit.CUBIC_METRE_PER_DAY: "m³/d",
    Unit.CUBIC_METRE_PER_DAY_CORRECTED: "m³/d", Unit.LITRE: "l", Unit.KILOGRAM: "kg",
    Unit.NEWTON: "N", Unit.NEWTON_METRE: "Nm", Unit.PASCAL: "Pa", Unit.BAR: "bar",
    Unit.JOULE: "J", Unit.JOULE_PER_HOUR: "J/h", Unit.WATT: "W", Unit.VOLT_AMPERE: "VA",
    Unit.VAR: "var", Unit.WATT_HOUR: "Wh", Unit.VOLT_AMPERE_HOUR: "VAh", Unit.VAR_HOUR: "varh",
    Unit.AMPERE: "A", Unit.COULOMB: "C", Unit.VOLT: "V", Unit.VOLT_PER_METRE: "V/m",
    Unit.FARAD: "F", Unit.OHM: "Ω", Unit.OHM_METRE: "Ωm", Unit.WEBER: "Wb", Unit.TESLA: "T",
    Unit.AMPERE_PER_METRE: "A/m", Unit.HENRY: "H", Unit.HERTZ: "Hz",
    Unit.ACTIVE_ENERGY_METER_CONSTANT: "1/(Wh)", Unit.REACTIVE_ENERGY_METER_CONSTANT: "1/(varh)",
    Unit.APPARENT_ENERGY_METER_CONSTANT: "1/(VAh)", Unit.VOLT_SQUARED_HOUR: "V²h",
    Unit.AMPERE_SQUARED_HOUR: "A²h", Unit.KILOGRAM_PER_SECOND: "kg/s", Unit.KELVIN: "K",
    Unit.PERCENT: "%", Unit.AMPERE_HOUR: "Ah", Unit.WATT_HOUR_PER_CUBIC_METRE: "Wh/m³",
    Unit.JOULE_PER_CUBIC_METRE: "J/m³", Unit.DECIBEL_MILLIWATT: "dBm", Unit.OTHER: "other",
    Unit.COUNT: "count",
}

#: code → Unit member, or the plain int for codes without a name (index 0..255, no hashing)
UNIT_BY_CODE: tuple[Unit | int, ...] = tuple(
    Unit(c) if c in Unit._value2member_map_ else c for c in range(256)
)


def unit_symbol(code: int | None) -> str | None:
    """Symbol for a unit code, ``"?<code>"`` for unnamed codes, ``None`` for no unit (or 0)."""
    if not code:
        return None
    u = UNIT_BY_CODE[code] if 0 <= code <= 255 else code
    return u.symbol if isinstance(u, Unit) else f"?{code}"


__all__ = ["UNIT_BY_CODE", "Unit", "unit_symbol"]

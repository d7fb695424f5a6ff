"""Simulated meters for the LMN: electricity, gas, water and heat.

Models (each names its source in its module docstring): BDEW standard load profiles H0/H25 and
G0/G25 (:mod:`.slp`, :mod:`.business`), PV (:mod:`.pv`, the pvlib chain in numpy), heat pump
(:mod:`.heat_pump`), EV charging (:mod:`.ev`), gas SigLinDe (:mod:`.gas`), water (:mod:`.water`),
district heat (:mod:`.heat`). :class:`MeterSimulator` turns a model and the injected clock into
:class:`MeterSnapshot` objects with OBIS readings and the FNN meter status word; the SML and
wM-Bus encoders in :mod:`imsys.lmn` turn those into bytes.
"""

from imsys.meters._grid import DayType, Season, YearGrid, year_grid
from imsys.meters.business import business
from imsys.meters.electricity import ElectricityModel, PhasePowers, Site
from imsys.meters.ev import ChargingSession, EvCharger
from imsys.meters.gas import GasHeating
from imsys.meters.heat import HeatSupply, HeatYear
from imsys.meters.heat_pump import HeatPump
from imsys.meters.ids import Medium, MeterId, make_meter_id
from imsys.meters.pv import PvPlant
from imsys.meters.registers import Reading, Unit, obis_hex
from imsys.meters.settings import FaultKind, InjectedFault, MeterSettings
from imsys.meters.simulator import (
    MeterKind,
    MeterSeries,
    MeterSimulator,
    MeterSnapshot,
    ModelKind,
    build_model,
)
from imsys.meters.slp import SlpProfile, StandardLoadProfile, household
from imsys.meters.status import MeterStatus, check_meter_status, meter_status_hex
from imsys.meters.water import WaterUse
from imsys.meters.weather import Climate

__all__ = [
    "ChargingSession",
    "Climate",
    "DayType",
    "ElectricityModel",
    "EvCharger",
    "FaultKind",
    "GasHeating",
    "HeatPump",
    "HeatSupply",
    "HeatYear",
    "InjectedFault",
    "Medium",
    "MeterId",
    "MeterKind",
    "MeterSeries",
    "MeterSettings",
    "MeterSimulator",
    "MeterSnapshot",
    "MeterStatus",
    "ModelKind",
    "PhasePowers",
    "PvPlant",
    "Reading",
    "Season",
    "Site",
    "SlpProfile",
    "StandardLoadProfile",
    "Unit",
    "WaterUse",
    "YearGrid",
    "build_model",
    "business",
    "check_meter_status",
    "household",
    "make_meter_id",
    "meter_status_hex",
    "obis_hex",
    "year_grid",
]

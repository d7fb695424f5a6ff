"""The households, certificates and state directories of a demo or ``imsys up`` system.

One household = one gateway with three meters: an H0 household meter and a PV feed-in meter
(SML over LMN-TLS, push) and a gas meter (wireless M-Bus, OMS mode 5, over the UDP "radio").
Its gateway gets TAF 1, 2, 6 and 7 evaluation profiles for the household meter and TAF 7 for
the PV and gas meters, all delivered to one EMT.

Gateways are provisioned **directly** here: their key pairs are generated in the process that
writes their state directory and certified by the development PKI (the path issue #4 allows
"until commissioning lands"). Commissioning through the GWA's admin session is the other path.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.localtime import BERLIN, as_utc
from imsys.crypto import SoftwareKey
from imsys.emt.server import provision_identity
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.process import CONFIG_FILE, CONFIG_FORMAT
from imsys.gateway.taf import (
    BillingPeriod,
    DayProfile,
    EvaluationProfile,
    Switch,
    Taf,
    TariffCalendar,
    TariffStage,
)
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory, pem

__all__ = [
    "EMT_ID",
    "SUB_CAS",
    "Household",
    "MeterPlan",
    "households",
    "init_pki",
    "provision_emt",
    "provision_gateway",
]

EMT_ID = "9900000000001"
SUB_CAS = ("sub-ca", "emt-ca")
ENERGY = ("1-0:1.8.0*255", "1-0:2.8.0*255")
GAS_VOLUME = "7-0:3.0.0*255"
Q = timedelta(minutes=15)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class MeterPlan:
    meter_id: str
    role: str  # "household", "pv", "gas"
    kind: str  # imsys meter run --kind
    profile: str  # --profile (electricity)
    interval: timedelta
    channels: tuple[str, ...]
    aes_key: bytes | None = None

    @property
    def wired(self) -> bool:
        return self.aes_key is None


@dataclass(frozen=True)
class Household:
    index: int
    gateway_id: str
    consumer_id: str
    meters: tuple[MeterPlan, ...]
    lmn_port: int
    wmbus_port: int

    def meter(self, role: str) -> MeterPlan:
        return next(m for m in self.meters if m.role == role)


def channels(meter_id: str, kind: MeterKind, model: ModelKind) -> tuple[str, ...]:
    """Every OBIS code the simulated meter sends (the meter profile must list them all)."""
    clock = SimulatedClock(datetime(2025, 1, 1, tzinfo=UTC))
    sim = MeterSimulator(meter_id, kind, model, MeterSettings(), clock)
    return tuple(r.obis for r in sim.snapshot_at(clock.now()).readings)


def households(count: int, ports: list[int]) -> list[Household]:
    """``count`` households; ``ports`` gives two free ports per household (LMN, wM-Bus).
    The gas meters' AES keys are random (``secrets``), whatever the seed."""
    out = []
    for i in range(count):
        n = i + 1
        h0, pv, gas = f"1EMH00{n:08d}", f"1EMH01{n:08d}", f"7ELS00{n:08d}"
        meters = (
            MeterPlan(h0, "household", "electricity", "h0", Q,
                      channels(h0, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0)),
            MeterPlan(pv, "pv", "electricity", "pv", Q,
                      channels(pv, MeterKind.ELECTRICITY, ModelKind.PV)),
            MeterPlan(gas, "gas", "gas", "gas", HOUR,
                      channels(gas, MeterKind.GAS, ModelKind.GAS_HEATING),
                      secrets.token_bytes(16)),
        )
        out.append(Household(n, f"EIMS00{n:08d}", f"consumer-{n}", meters,
                             ports[2 * i], ports[2 * i + 1]))
    return out


def init_pki(path: Path, not_before: datetime, *,
             crl_lifetime: timedelta = timedelta(days=7)) -> PkiDirectory:
    """A fresh SM-PKI whose certificates are valid from ``not_before`` (the simulated window
    lies in the recent past, so certificates must predate it); its CRLs must stay valid until
    after the run, checked at the real time: give ``crl_lifetime`` from ``not_before``."""
    clock = SimulatedClock(not_before)
    PkiDirectory.init(path, sub_cas=SUB_CAS, clock=clock, crl_lifetime=crl_lifetime)
    return PkiDirectory.open(path, clock=clock)


def provision_emt(pki: PkiDirectory, keys_dir: Path) -> None:
    provision_identity(pki, EMT_ID, keys_dir, ca="emt-ca")


def write_key_pair(keys: Path, purpose: str, key: SoftwareKey, cert: x509.Certificate,
                chain: tuple[x509.Certificate, ...]) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    key_path = keys / f"{purpose}.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_key_pem())
    (keys / f"{purpose}.pem").write_bytes(b"".join(pem(c) for c in (cert, *chain)))


def _tariff_calendar() -> TariffCalendar:
    """HT 06:00–22:00 on working days, NT otherwise (stage 1 HT, stage 2 NT)."""
    weekday = DayProfile(1, (Switch(time(0), 2), Switch(time(6), 1), Switch(time(22), 2)))
    weekend = DayProfile(2, (Switch(time(0), 2),))
    return TariffCalendar((weekday, weekend), weekday=1, saturday=2, sunday_holiday=2)


def evaluation_profiles(household: Household, valid_from: datetime) -> list[EvaluationProfile]:
    h0 = household.meter("household").meter_id
    pv = household.meter("pv").meter_id
    gas = household.meter("gas").meter_id
    first = valid_from.astimezone(BERLIN).date().replace(day=1)
    common = {"recipients": (EMT_ID,), "pseudonym": None, "valid_from": valid_from,
              "tariff_stages": (), "tariff_calendar": None, "billing_period": None,
              "registration_period": None}
    n = household.index
    return [
        EvaluationProfile(profile_id=f"TAF1-{n:04d}", taf=Taf.TAF1, meter_id=h0,
                          registers=("1-0:1.8.0*255",),
                          **{**common, "billing_period": BillingPeriod(first, 1)}),
        EvaluationProfile(profile_id=f"TAF2-{n:04d}", taf=Taf.TAF2, meter_id=h0,
                          registers=("1-0:1.8.0*255",),
                          **{**common, "tariff_stages": (TariffStage(1, "HT"),
                                                         TariffStage(2, "NT")),
                             "tariff_calendar": _tariff_calendar()}),
        EvaluationProfile(profile_id=f"TAF6-{n:04d}", taf=Taf.TAF6, meter_id=h0,
                          registers=("1-0:1.8.0*255",), **common),
        EvaluationProfile(profile_id=f"TAF7-{n:04d}", taf=Taf.TAF7, meter_id=h0,
                          registers=ENERGY, **{**common, "registration_period": Q}),
        EvaluationProfile(profile_id=f"TAF7-PV-{n:04d}", taf=Taf.TAF7, meter_id=pv,
                          registers=("1-0:2.8.0*255",), **{**common, "registration_period": Q}),
        EvaluationProfile(profile_id=f"TAF7-GAS-{n:04d}", taf=Taf.TAF7, meter_id=gas,
                          registers=(GAS_VOLUME,), **{**common, "registration_period": HOUR}),
    ]


def provision_meter(pki: PkiDirectory, meter: MeterPlan, folder: Path) -> x509.Certificate | None:
    """The wired meter's LMN-TLS key pair and CA file (``cert.pem``, ``key.pem``, ``ca.pem``)."""
    if not meter.wired:
        return None
    key, cert = pki.issue_with_new_key("meter-tls", meter.meter_id, ca="sub-ca")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.pem").touch(mode=0o600)
    (folder / "key.pem").write_bytes(key.private_key_pem())
    (folder / "cert.pem").write_bytes(pem(cert) + pem(pki.ca("sub-ca").certificate))
    (folder / "ca.pem").write_bytes(b"".join(pem(c) for c in (
        pki.root.certificate, *(pki.ca(n).certificate for n in SUB_CAS))))
    return cert


def provision_gateway(pki: PkiDirectory, household: Household, state: Path, meters_dir: Path,
                      emt_keys: Path, emt_port: int, valid_from: datetime,
                      delivery_interval: timedelta) -> None:
    """Write the gateway's state directory (keys, trust, EMT certificates, ``gateway.json``)
    and its meters' LMN-TLS material under ``meters_dir/<meter id>/``."""
    gid = household.gateway_id
    sub = pki.ca("sub-ca").certificate
    for purpose in ("tls", "sig"):
        key, cert = pki.issue_with_new_key(f"gateway-{purpose}", gid, ca="sub-ca")
        write_key_pair(state / "keys", purpose, key, cert, (sub,))
    trust = state / "trust"
    trust.mkdir(parents=True, exist_ok=True)
    (trust / "root.pem").write_bytes(pem(pki.root.certificate))
    for name in SUB_CAS:
        (trust / f"{name}.pem").write_bytes(pem(pki.ca(name).certificate))
    (state / "emt").mkdir(exist_ok=True)
    for purpose in ("enc", "sig"):
        (state / "emt" / f"{purpose}.pem").write_bytes((emt_keys / f"{purpose}.pem").read_bytes())
    profiles = []
    for meter in household.meters:
        cert = provision_meter(pki, meter, meters_dir / meter.meter_id)
        if cert is not None:
            profiles.append(MeterProfile(meter_id=meter.meter_id,
                                         protocol=MeterProtocol.SML_TLS_PUSH,
                                         tls_fingerprint=tls_fingerprint(cert),
                                         channels=meter.channels, read_interval=meter.interval,
                                         consumer_id=household.consumer_id))
        else:
            profiles.append(MeterProfile(meter_id=meter.meter_id,
                                         protocol=MeterProtocol.WMBUS_MODE5,
                                         aes_key=meter.aes_key, channels=meter.channels,
                                         read_interval=meter.interval,
                                         consumer_id=household.consumer_id))
    config = {
        "format": CONFIG_FORMAT,
        "gateway_id": gid,
        "usage_point_id": usage_point(household),
        "lmn": {"listen": f"127.0.0.1:{household.lmn_port}",
                "wmbus_listen": f"127.0.0.1:{household.wmbus_port}"},
        "emt": {"id": EMT_ID, "url": f"https://127.0.0.1:{emt_port}/deliveries/v1",
                "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem"},
        "trust": {"anchors": ["trust/root.pem"],
                  "intermediates": [f"trust/{name}.pem" for name in SUB_CAS]},
        "meter_profiles": [p.to_dict() for p in profiles],
        "evaluation_profiles": [e.to_dict() for e in evaluation_profiles(household, valid_from)],
        "delivery_interval": int(delivery_interval.total_seconds()),
    }
    (state / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def usage_point(household: Household) -> str:
    """The household's metering point designation (33 characters, DE…)."""
    return f"DE00IMSYS{household.index:024d}"


def window(days: int, now: datetime) -> tuple[datetime, datetime]:
    """The simulated window: ``days`` whole local days ending at the last local midnight."""
    today = now.astimezone(BERLIN).date()
    end_day: date = today
    start_day = end_day - timedelta(days=days)
    start = datetime.combine(start_day, time(0), BERLIN)
    end = datetime.combine(end_day, time(0), BERLIN)
    return as_utc(start), as_utc(end)

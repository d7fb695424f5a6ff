"""A commissioned gateway's persistent parts in its state directory, opened together.

A gateway made through commissioning (seed 003 §2.3) keeps, besides ``gateway.db``:

* ``device.json`` – format ``imsys-gateway-device/1``: gateway id, security-module settings;
* ``secmod/`` – the software security module's encrypted store;
* ``secmod.passphrase`` – that store's passphrase (0600): the software backend's stand-in for
  a device-bound secret (a PKCS#11 token takes its user PIN from ``IMSYS_PKCS11_PIN``);
* ``commissioning.json`` – the commissioning state (``CommissioningState``);
* ``local-interface.json`` – the local interface's PIN references, until it is disabled.

:class:`GatewayDevice` opens them in the right order: the database, the security module, the
commissioning state machine (which presents the stored system PIN to the module) and the
administration context the command handlers act on.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imsys.core.clock import Clock
from imsys.core.errors import UsageError
from imsys.gateway._commissioning_base import JsonFileState, SmPkiTrust, system_log_hook
from imsys.gateway.admin.config_store import ConfigStore
from imsys.gateway.admin.context import AdminContext
from imsys.gateway.commissioning import Commissioning
from imsys.gateway.local_interface import LocalInterface
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.store import Database, Durability
from imsys.secmod import SecurityModule, SoftwareSecurityModule

__all__ = ["DEVICE_FILE", "DeviceSettings", "GatewayDevice", "is_device"]

DEVICE_FILE = "device.json"
FORMAT = "imsys-gateway-device/1"
DB_FILE = "gateway.db"
SECMOD_DIR = "secmod"
PASSPHRASE_FILE = "secmod.passphrase"
COMMISSIONING_FILE = "commissioning.json"
LOCAL_INTERFACE_FILE = "local-interface.json"
PKCS11_PIN_ENV = "IMSYS_PKCS11_PIN"


def is_device(state_dir: Path) -> bool:
    """Whether ``state_dir`` holds a commissioned-path gateway (``device.json``)."""
    return (Path(state_dir) / DEVICE_FILE).exists()


@dataclass(frozen=True)
class DeviceSettings:
    """``device.json``: which gateway, which security module."""

    gateway_id: str
    secmod: str = "software"  # or "pkcs11"
    pkcs11_library: str | None = None
    pkcs11_token: str | None = None
    #: the device's own network set-up (the installer's, not the administrator's business)
    lmn_listen: str = "127.0.0.1:0"
    wmbus_listen: str | None = None
    wakeup_listen: str | None = None
    #: wake-ups that may start a connection at once, then one per ``wakeup_interval`` seconds
    wakeup_burst: int = 2
    wakeup_interval: int = 30
    han_listen: str | None = None  # technician diagnostics over HAN TLS (seed 003 §6)
    #: seconds between TAF evaluations / deliveries, and between unprompted admin sessions
    delivery_interval: int = 900
    admin_interval: int = 3600
    usage_point_id: str | None = None

    def __post_init__(self) -> None:
        if self.secmod not in ("software", "pkcs11"):
            raise UsageError("secmod is 'software' or 'pkcs11'")
        if self.secmod == "pkcs11" and not (self.pkcs11_library and self.pkcs11_token):
            raise UsageError("a pkcs11 security module needs library and token")
        for name in ("delivery_interval", "admin_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 60:
                raise UsageError(f"{name} is whole seconds, at least 60")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **{name: getattr(self, name) for name in _FIELDS}}

    @classmethod
    def load(cls, state_dir: Path) -> DeviceSettings:
        try:
            doc = json.loads((Path(state_dir) / DEVICE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {Path(state_dir) / DEVICE_FILE}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f"{DEVICE_FILE} is not {FORMAT}")
        unknown = set(doc) - set(_FIELDS) - {"format"}
        if unknown:
            raise UsageError(f"{DEVICE_FILE}: unknown fields {sorted(unknown)}")
        return cls(**{name: doc[name] for name in _FIELDS if name in doc})


_FIELDS = tuple(DeviceSettings.__dataclass_fields__)


def _passphrase(state_dir: Path, *, create: bool) -> bytes:
    path = state_dir / PASSPHRASE_FILE
    if create and not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    try:
        return path.read_text().strip().encode()
    except OSError as exc:
        raise UsageError(f"cannot read the security module's passphrase: {exc}") from exc


def open_secmod(state_dir: Path, settings: DeviceSettings, clock: Clock, *,
                create: bool = False, kdf_log2_n: int | None = None) -> SecurityModule:
    if settings.secmod == "pkcs11":
        from imsys.secmod.pkcs11 import Pkcs11SecurityModule

        pin = os.environ.get(PKCS11_PIN_ENV)
        if not pin:
            raise UsageError(f"set {PKCS11_PIN_ENV} to the token's user PIN")
        assert settings.pkcs11_library is not None and settings.pkcs11_token is not None
        return Pkcs11SecurityModule(settings.pkcs11_library, settings.pkcs11_token, pin,
                                    clock=clock)
    store = state_dir / SECMOD_DIR
    passphrase = _passphrase(state_dir, create=create)
    if create and not store.exists():
        extra = {} if kdf_log2_n is None else {"kdf_log2_n": kdf_log2_n}
        return SoftwareSecurityModule.create(store, passphrase, clock=clock, **extra)
    return SoftwareSecurityModule(store, passphrase, clock=clock)


class GatewayDevice:
    """The database, security module, commissioning and admin context of one gateway."""

    def __init__(self, state_dir: Path, clock: Clock, *,
                 durability: Durability = Durability.FULL, create: DeviceSettings | None = None,
                 kdf_log2_n: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.clock = clock
        if create is not None:
            if is_device(self.state_dir):
                raise UsageError(f"{self.state_dir} already holds a gateway")
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / DEVICE_FILE).write_text(json.dumps(create.to_json(), indent=2))
        self.settings = DeviceSettings.load(self.state_dir)
        self.db = Database(self.state_dir / DB_FILE, durability=durability)
        try:
            self.logs = GatewayLogs(self.db, clock)
            self.config = ConfigStore(self.db)
            self.secmod = open_secmod(self.state_dir, self.settings, clock,
                                      create=create is not None, kdf_log2_n=kdf_log2_n)
            self.commissioning = Commissioning(
                self.secmod, SmPkiTrust(), JsonFileState(self.state_dir / COMMISSIONING_FILE),
                gateway_id=self.settings.gateway_id, clock=clock,
                log=system_log_hook(self.logs.system), system_log=self.logs.system)
        except BaseException:
            self.db.close()
            raise

    @property
    def gateway_id(self) -> str:
        return self.settings.gateway_id

    def local_interface(self) -> LocalInterface:
        return LocalInterface(self.commissioning,
                              JsonFileState(self.state_dir / LOCAL_INTERFACE_FILE),
                              log=system_log_hook(self.logs.system))

    def provision_local_interface(self, integrator_pin: str, installer_pin: str) -> None:
        LocalInterface.provision(JsonFileState(self.state_dir / LOCAL_INTERFACE_FILE),
                                 integrator_pin=integrator_pin, installer_pin=installer_pin)

    def context(self, **extras: Any) -> AdminContext:
        return AdminContext(self.gateway_id, self.db, self.logs, self.clock, self.config,
                            self.state_dir, self.secmod, self.commissioning, dict(extras))

    def close(self) -> None:
        self.secmod.close()
        self.db.close()

    def __enter__(self) -> GatewayDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

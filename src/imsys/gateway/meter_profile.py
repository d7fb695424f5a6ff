"""The meter profile ("Zählerprofil"): which meter may deliver data to the gateway, and how.

Seed 003 §3.8 and table 1 step 2.2: the gateway accepts data only from meters it knows "in Form
eines Zählerprofils". A :class:`MeterProfile` is a frozen document validated on construction
(STYLE.md §4), so an invalid profile cannot exist; each refusal is a
:class:`MeterProfileRejected` with a :class:`MeterProfileReason`. Fields, in the order of the
primary data of seed 003 §3.5 followed by what the LMN needs:

1. ``meter_id`` – DIN 43863-5 style id (``1EMH0012345678``); the LMN TLS certificate's common
   name of a wired meter and (through :func:`wmbus_address_key`) the wM-Bus address of a
   wireless one.
2. ``protocol`` – :class:`MeterProtocol`: SML over LMN-TLS, the meter pushing (TLS client) or
   the gateway pulling (meter is TLS server); wireless M-Bus with OMS security mode 5 or 7.
3. key material – wired: ``tls_fingerprint``, the SHA-256 of the meter's ``meter-tls``
   certificate (DER), pinned in addition to the SM-PKI path check; wireless: the AES-128 key,
   either as ``aes_key_label`` (the name of the secret in the security module – the form a
   production gateway uses) or, for now, raw as ``aes_key`` (tests, simulations). Exactly one.
   Optionally, for a wired meter that signs its values, ``signature_key``: the meter's public key
   (DER SubjectPublicKeyInfo, brainpool curve); then every value must carry a valid SML value
   signature (imsys layout *[I]*, :func:`imsys.gateway.measurement.signed_value_input`).
4. ``channels`` – the OBIS codes (canonical ``A-B:C.D.E*F``) the gateway accepts from the meter;
   a frame carrying a value of another register is refused (``UNEXPECTED_CHANNEL``).
5. ``transformer_factor`` – the "Wandlerfaktor"/MeterValueFactor (seed 003 §3.5 and footnote 8):
   *assigned* to the values, never multiplied in – the gateway stores them unchanged (step 4.1).
6. ``read_interval`` – the period at which the meter pushes / the gateway polls (seed 003 §3.4).
7. ``consumer_id`` – whose consumer log records the meter's values.

LMN options: ``endpoint`` (``HOST:PORT`` of a pull meter), ``pull_request``
(:class:`PullRequest`: GetList or GetProfileList), ``clock_off`` (:class:`ClockOffPolicy`: what
step 3.4 does with a value from a meter whose clock is off; see docs/measurement.md).

:meth:`MeterProfile.to_dict` / :meth:`MeterProfile.from_dict` map the profile to a JSON-compatible
document (format :data:`PROFILE_FORMAT`; bytes as lower-case hex, the interval in seconds).
Verifying the administrator's signature over the document belongs to the loader of signed
configuration (not done here yet).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import Rejected, UsageError
from imsys.core.reading import canonical_obis
from imsys.crypto.primitives import check_public_key

#: The document format written by :meth:`MeterProfile.to_dict`.
PROFILE_FORMAT = "imsys-meter-profile/1"

_METER_ID = re.compile(r"^[0-9A-F][A-Z]{3}[0-9]{2}[0-9]{8}$")
_CONSUMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
#: shortest and longest read interval a profile may set
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=1)


class MeterProfileReason(StrEnum):
    """Why a meter profile was refused."""

    #: the document's structure or a field's type is wrong (``from_dict``)
    MALFORMED = "malformed"
    #: the document names a format this code does not read
    UNSUPPORTED_FORMAT = "unsupported-format"
    #: not a DIN 43863-5 meter id, or a bad consumer id
    BAD_IDENTIFIER = "bad-identifier"
    #: key material missing, of the wrong length, or not fitting the protocol
    BAD_KEY_MATERIAL = "bad-key-material"
    #: no channel, a duplicate, or not an OBIS code
    BAD_CHANNEL = "bad-channel"
    #: transformer factor not a positive integer
    BAD_TRANSFORMER_FACTOR = "bad-transformer-factor"
    #: read interval not whole seconds in [1 s, 1 day]
    BAD_INTERVAL = "bad-interval"
    #: endpoint missing for a pull meter, given for another, or not HOST:PORT
    BAD_ENDPOINT = "bad-endpoint"


class MeterProfileRejected(Rejected):
    """A meter profile is invalid; it is never built. ``reason`` is a
    :class:`MeterProfileReason`."""

    reason: MeterProfileReason  # type: ignore[assignment]

    def __init__(self, reason: MeterProfileReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class MeterProtocol(StrEnum):
    """How the meter's values reach the gateway over the LMN (seed 003 step 2.1)."""

    #: SML over LMN-TLS, the meter connects and pushes (PUSH-Betrieb)
    SML_TLS_PUSH = "sml-tls-push"
    #: SML over LMN-TLS, the gateway connects and asks (PULL-Betrieb)
    SML_TLS_PULL = "sml-tls-pull"
    #: wireless M-Bus, OMS security mode 5 (AES-128-CBC, persistent key)
    WMBUS_MODE5 = "wmbus-mode5"
    #: wireless M-Bus, OMS security mode 7 (AES-128-CBC with derived keys, CMAC, counter)
    WMBUS_MODE7 = "wmbus-mode7"

    @property
    def wired(self) -> bool:
        return self in (MeterProtocol.SML_TLS_PUSH, MeterProtocol.SML_TLS_PULL)


class PullRequest(StrEnum):
    """What the gateway asks a pull meter for at each read interval."""

    #: ``SML_GetList.Req``: the current register values, time-stamped by the gateway
    GET_LIST = "get-list"
    #: ``SML_GetProfileList.Req``: the registration periods since the last one stored
    GET_PROFILE_LIST = "get-profile-list"


class ClockOffPolicy(StrEnum):
    """What step 3.4 does with a value from a meter whose clock is off (docs/measurement.md)."""

    #: store it, marked invalid (seed 003 step 4.1 stores "alle" time-stamped values)
    MARK_INVALID = "mark-invalid"
    #: refuse the frame (``ReadingRejected(METER_CLOCK_OFF)``), nothing stored
    REJECT = "reject"


def tls_fingerprint(certificate: x509.Certificate) -> bytes:
    """SHA-256 over the DER encoding of ``certificate`` (what ``tls_fingerprint`` pins)."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


def _bad(reason: MeterProfileReason, message: str, **context: Any) -> MeterProfileRejected:
    return MeterProfileRejected(reason, message, **context)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterProfile:
    """One meter the gateway knows (seed 003 step 2.2). Validated on construction."""

    meter_id: str
    protocol: MeterProtocol
    tls_fingerprint: bytes | None = None
    aes_key: bytes | None = None
    aes_key_label: str | None = None
    signature_key: bytes | None = None
    channels: tuple[str, ...]
    transformer_factor: int = 1
    read_interval: timedelta = timedelta(minutes=15)
    consumer_id: str
    endpoint: str | None = None
    pull_request: PullRequest = PullRequest.GET_PROFILE_LIST
    clock_off: ClockOffPolicy = ClockOffPolicy.MARK_INVALID

    def __post_init__(self) -> None:
        if not isinstance(self.meter_id, str) or not _METER_ID.match(self.meter_id):
            raise _bad(MeterProfileReason.BAD_IDENTIFIER, "not a DIN 43863-5 meter id")
        try:
            object.__setattr__(self, "protocol", MeterProtocol(self.protocol))
            object.__setattr__(self, "pull_request", PullRequest(self.pull_request))
            object.__setattr__(self, "clock_off", ClockOffPolicy(self.clock_off))
        except ValueError as exc:
            raise _bad(MeterProfileReason.MALFORMED, str(exc), meter_id=self.meter_id) from exc
        self._check_keys()
        self._check_channels()
        if (type(self.transformer_factor) is not int or not 1 <= self.transformer_factor
                <= 1_000_000):
            raise _bad(MeterProfileReason.BAD_TRANSFORMER_FACTOR,
                       "transformer factor must be an integer 1..1000000",
                       meter_id=self.meter_id)
        interval = self.read_interval
        if (not isinstance(interval, timedelta) or interval.microseconds
                or not MIN_INTERVAL <= interval <= MAX_INTERVAL):
            raise _bad(MeterProfileReason.BAD_INTERVAL, "read interval must be whole seconds "
                       "in [1 s, 1 day]", meter_id=self.meter_id)
        if not isinstance(self.consumer_id, str) or not _CONSUMER_ID.match(self.consumer_id):
            raise _bad(MeterProfileReason.BAD_IDENTIFIER, "bad consumer id",
                       meter_id=self.meter_id)
        pull = self.protocol is MeterProtocol.SML_TLS_PULL
        if pull != (self.endpoint is not None):
            raise _bad(MeterProfileReason.BAD_ENDPOINT, "a pull meter needs an endpoint, "
                       "other meters have none", meter_id=self.meter_id)
        if self.endpoint is not None:
            m = _ENDPOINT.match(self.endpoint) if isinstance(self.endpoint, str) else None
            if m is None or not 1 <= int(m.group(2)) <= 65535:
                raise _bad(MeterProfileReason.BAD_ENDPOINT, "endpoint must be HOST:PORT",
                           meter_id=self.meter_id)

    def _check_keys(self) -> None:
        fp, key, label = self.tls_fingerprint, self.aes_key, self.aes_key_label
        if self.protocol.wired:
            if key is not None or label is not None:
                raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "a wired meter has no AES key",
                           meter_id=self.meter_id)
            if not isinstance(fp, bytes) or len(fp) != 32:
                raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "a wired meter needs the "
                           "SHA-256 fingerprint of its TLS certificate", meter_id=self.meter_id)
            if self.signature_key is not None:
                signature_public_key(self)
            return
        if self.signature_key is not None:
            raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "SML value signatures are for "
                       "wired meters", meter_id=self.meter_id)
        if fp is not None:
            raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "a wireless meter has no TLS "
                       "certificate", meter_id=self.meter_id)
        if (key is None) == (label is None):
            raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "a wireless meter needs exactly one "
                       "of aes_key and aes_key_label", meter_id=self.meter_id)
        if key is not None and (not isinstance(key, bytes) or len(key) != 16):
            raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "the AES key has 16 bytes",
                       meter_id=self.meter_id)
        if label is not None and (not isinstance(label, str) or not _LABEL.match(label)):
            raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "bad security-module label",
                       meter_id=self.meter_id)

    def _check_channels(self) -> None:
        channels = self.channels
        if isinstance(channels, str) or not isinstance(channels, tuple | list) or not channels:
            raise _bad(MeterProfileReason.BAD_CHANNEL, "at least one channel (OBIS code)",
                       meter_id=self.meter_id)
        out: list[str] = []
        for c in channels:
            try:
                obis = canonical_obis(c) if isinstance(c, str) else None
            except UsageError:
                obis = None
            if obis is None:
                raise _bad(MeterProfileReason.BAD_CHANNEL, "not an OBIS code",
                           meter_id=self.meter_id, channel=str(c))
            if obis in out:
                raise _bad(MeterProfileReason.BAD_CHANNEL, "channel listed twice",
                           meter_id=self.meter_id, channel=obis)
            out.append(obis)
        object.__setattr__(self, "channels", tuple(out))

    # ------------------------------------------------------------------ document

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-compatible document (format :data:`PROFILE_FORMAT`)."""
        return {
            "format": PROFILE_FORMAT,
            "meter_id": self.meter_id,
            "protocol": self.protocol.value,
            "tls_fingerprint": None if self.tls_fingerprint is None else self.tls_fingerprint.hex(),
            "aes_key": None if self.aes_key is None else self.aes_key.hex(),
            "aes_key_label": self.aes_key_label,
            "signature_key": None if self.signature_key is None else self.signature_key.hex(),
            "channels": list(self.channels),
            "transformer_factor": self.transformer_factor,
            "read_interval_s": int(self.read_interval.total_seconds()),
            "consumer_id": self.consumer_id,
            "endpoint": self.endpoint,
            "pull_request": self.pull_request.value,
            "clock_off": self.clock_off.value,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> MeterProfile:
        """Inverse of :meth:`to_dict`; unknown or missing fields are refused (``MALFORMED``)."""
        if not isinstance(document, Mapping):
            raise _bad(MeterProfileReason.MALFORMED, "a meter profile is a mapping")
        if document.get("format") != PROFILE_FORMAT:
            raise _bad(MeterProfileReason.UNSUPPORTED_FORMAT, "unknown profile format",
                       format=str(document.get("format")))
        required = {"meter_id", "protocol", "channels", "consumer_id", "read_interval_s"}
        known = required | {"format", "tls_fingerprint", "aes_key", "aes_key_label",
                            "signature_key",
                            "transformer_factor", "endpoint", "pull_request", "clock_off"}
        unknown = sorted(set(document) - known)
        missing = sorted(required - set(document))
        if unknown or missing:
            raise _bad(MeterProfileReason.MALFORMED, "unknown or missing fields",
                       unknown=unknown, missing=missing)

        def hex_bytes(name: str) -> bytes | None:
            value = document.get(name)
            if value is None:
                return None
            try:
                return bytes.fromhex(value)
            except (TypeError, ValueError) as exc:
                raise _bad(MeterProfileReason.MALFORMED, f"{name} is not hex") from exc

        interval = document["read_interval_s"]
        channels = document["channels"]
        if type(interval) is not int or not isinstance(channels, list):
            raise _bad(MeterProfileReason.MALFORMED, "read_interval_s is an integer, "
                       "channels a list")
        return cls(
            meter_id=document["meter_id"],
            protocol=document["protocol"],
            tls_fingerprint=hex_bytes("tls_fingerprint"),
            aes_key=hex_bytes("aes_key"),
            aes_key_label=document.get("aes_key_label"),
            signature_key=hex_bytes("signature_key"),
            channels=tuple(channels),
            transformer_factor=document.get("transformer_factor", 1),
            read_interval=timedelta(seconds=interval),
            consumer_id=document["consumer_id"],
            endpoint=document.get("endpoint"),
            pull_request=document.get("pull_request", PullRequest.GET_PROFILE_LIST.value),
            clock_off=document.get("clock_off", ClockOffPolicy.MARK_INVALID.value),
        )


def signature_public_key(profile: MeterProfile) -> ec.EllipticCurvePublicKey:
    """The meter's public key for SML value signatures (``BAD_KEY_MATERIAL`` if it is not an EC
    key on a permitted curve)."""
    try:
        key = serialization.load_der_public_key(cast(bytes, profile.signature_key))
        return check_public_key(key)
    except (TypeError, ValueError, Rejected) as exc:
        raise _bad(MeterProfileReason.BAD_KEY_MATERIAL, "signature key is not an EC public key "
                   "on a permitted curve", meter_id=profile.meter_id) from exc


def wmbus_address_key(meter_id: str) -> tuple[str, str, int]:
    """``(manufacturer, identification, version)`` of the wM-Bus address of ``meter_id``.

    imsys convention (docs/meters.md, ``imsys.meters.lmn_payload.wmbus_address``): the M-field
    is the FLAG code, the identification number the eight-digit serial as BCD, the version the
    production block. The device type is not part of the key (it follows the medium).
    """
    if not _METER_ID.match(meter_id):
        raise UsageError(f"not a DIN 43863-5 meter id: {meter_id!r}")
    return meter_id[1:4], meter_id[6:14], int(meter_id[4:6])


__all__ = [
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "PROFILE_FORMAT",
    "ClockOffPolicy",
    "MeterProfile",
    "MeterProfileReason",
    "MeterProfileRejected",
    "MeterProtocol",
    "PullRequest",
    "signature_public_key",
    "tls_fingerprint",
    "wmbus_address_key",
]

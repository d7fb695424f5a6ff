"""Certificate profiles of the imsys SM-PKI (our documented profile of TR-03109-4).

The TR-03109-4 certificate profiles are not public (spec/facts.md §3, gap). imsys defines one
profile per (role, purpose), built from RFC 5280 and the key separation the seeds name:
every participant holds separate TLS, signature (SIG) and encryption (ENC) key pairs, the
administrator additionally an authentication key pair (AUT) for the security module, and the
gateway a preliminary "Gütesiegel" set (``*_PRE``) besides its operational set.

A profile fixes key usage, extended key usage, validity and subject naming, and marks the
certificate with a certificate-policy OID under the imsys arc, so a verifier can tell a
gateway's SIG certificate from an administrator's AUT certificate without guessing. The arc is
``2.25.<uuid>`` (X.667: an OID anyone may derive from a UUID), see docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from imsys.core.errors import CertificateRejected, Reason

#: Root of imsys object identifiers: 2.25 + the UUID 5 of "https://github.com/imsys/imsys#oid".
IMSYS_ARC = "2.25.190453876197160065664419042146668256540"
#: Certificate policies: ``IMSYS_ARC.1.<role>.<purpose>``.
POLICY_ARC = f"{IMSYS_ARC}.1"


class Role(StrEnum):
    """Participants of the SM-PKI (seeds 001–003)."""

    ROOT = "root"
    SUB_CA = "sub-ca"
    GWA = "gwa"  # gateway administrator (SMGW-Admin)
    MANUFACTURER = "manufacturer"  # gateway manufacturer (GWH): firmware signature, update server
    EMT = "emt"  # external market participant (incl. metering point operator)
    GATEWAY = "gateway"  # SMGW, operational certificates
    GATEWAY_PRE = "gateway-pre"  # SMGW, preliminary "Gütesiegel" certificates (*_PRE)
    TECHNICIAN = "technician"  # service technician (HAN diagnostics)
    METER = "meter"  # meter on the LMN (TLS towards the gateway)
    CONSUMER = "consumer"  # consumer on the HAN (client certificate)


class Purpose(StrEnum):
    CA = "ca"
    TLS = "tls"
    SIG = "sig"
    ENC = "enc"
    AUT = "aut"


class KeyUsage(StrEnum):
    DIGITAL_SIGNATURE = "digital_signature"
    NON_REPUDIATION = "non_repudiation"
    KEY_AGREEMENT = "key_agreement"
    KEY_CERT_SIGN = "key_cert_sign"
    CRL_SIGN = "crl_sign"


SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
CODE_SIGNING = "1.3.6.1.5.5.7.3.3"

_ROLE_NUMBERS = {
    Role.ROOT: 1, Role.SUB_CA: 2, Role.GWA: 3, Role.MANUFACTURER: 4, Role.EMT: 5,
    Role.GATEWAY: 6, Role.GATEWAY_PRE: 7, Role.TECHNICIAN: 8, Role.METER: 9, Role.CONSUMER: 10,
}
_PURPOSE_NUMBERS = {Purpose.CA: 0, Purpose.TLS: 1, Purpose.SIG: 2, Purpose.ENC: 3, Purpose.AUT: 4}

_ROLE_OU = {
    Role.ROOT: "SM-PKI Root", Role.SUB_CA: "SM-PKI Sub-CA", Role.GWA: "GWA",
    Role.MANUFACTURER: "GWH", Role.EMT: "EMT", Role.GATEWAY: "SMGW", Role.GATEWAY_PRE: "SMGW",
    Role.TECHNICIAN: "Service", Role.METER: "Meter", Role.CONSUMER: "Consumer",
}


@dataclass(frozen=True)
class CertificateProfile:
    """What a certificate of one (role, purpose) must look like."""

    role: Role
    purpose: Purpose
    key_usage: frozenset[KeyUsage]
    extended_key_usage: tuple[str, ...]
    validity: timedelta
    is_ca: bool = False
    path_length: int | None = None
    #: the name in seed 003 (e.g. ``GW_WAN_SIG_CRT_PRE``), where the seed has one
    seed_name: str = ""

    @property
    def name(self) -> str:
        """Profile name used on the command line: ``gateway-tls``, ``gwa-aut``, ``root``."""
        if self.role in (Role.ROOT, Role.SUB_CA):
            return self.role.value
        return f"{self.role.value}-{self.purpose.value}"

    @property
    def policy_oid(self) -> str:
        return f"{POLICY_ARC}.{_ROLE_NUMBERS[self.role]}.{_PURPOSE_NUMBERS[self.purpose]}"

    @property
    def organizational_unit(self) -> str:
        return _ROLE_OU[self.role]


_YEAR = timedelta(days=365)
_TLS_KU = frozenset({KeyUsage.DIGITAL_SIGNATURE})
_SIG_KU = frozenset({KeyUsage.DIGITAL_SIGNATURE, KeyUsage.NON_REPUDIATION})
_ENC_KU = frozenset({KeyUsage.KEY_AGREEMENT})
_AUT_KU = frozenset({KeyUsage.DIGITAL_SIGNATURE})
_CA_KU = frozenset({KeyUsage.KEY_CERT_SIGN, KeyUsage.CRL_SIGN})
_TLS_EKU = (SERVER_AUTH, CLIENT_AUTH)


def _entity(role: Role, purpose: Purpose, validity: timedelta, seed_name: str = ""
            ) -> CertificateProfile:
    key_usage, eku = {
        Purpose.TLS: (_TLS_KU, _TLS_EKU),
        Purpose.SIG: (_SIG_KU, ()),
        Purpose.ENC: (_ENC_KU, ()),
        Purpose.AUT: (_AUT_KU, ()),
    }[purpose]
    if role is Role.MANUFACTURER and purpose is Purpose.SIG:
        eku = (CODE_SIGNING,)
    return CertificateProfile(role, purpose, key_usage, eku, validity, seed_name=seed_name)


PROFILES: dict[str, CertificateProfile] = {
    p.name: p
    for p in (
        CertificateProfile(Role.ROOT, Purpose.CA, _CA_KU, (), 10 * _YEAR, True, 1,
                           "ROOT_WAN_SIG_CRT"),
        CertificateProfile(Role.SUB_CA, Purpose.CA, _CA_KU, (), 7 * _YEAR, True, 0),
        _entity(Role.GWA, Purpose.TLS, 2 * _YEAR, "GWADM_TLS_CRT"),
        _entity(Role.GWA, Purpose.SIG, 2 * _YEAR, "GWADM_SIG_CRT"),
        _entity(Role.GWA, Purpose.ENC, 2 * _YEAR, "GWADM_ENC_CRT"),
        _entity(Role.GWA, Purpose.AUT, 2 * _YEAR, "GWADM_AUT_CRT"),
        _entity(Role.MANUFACTURER, Purpose.TLS, 2 * _YEAR),
        _entity(Role.MANUFACTURER, Purpose.SIG, 2 * _YEAR),
        _entity(Role.EMT, Purpose.TLS, 2 * _YEAR),
        _entity(Role.EMT, Purpose.SIG, 2 * _YEAR),
        _entity(Role.EMT, Purpose.ENC, 2 * _YEAR),
        _entity(Role.GATEWAY, Purpose.TLS, 2 * _YEAR, "GW_WAN_TLS_CRT"),
        _entity(Role.GATEWAY, Purpose.SIG, 2 * _YEAR, "GW_WAN_SIG_CRT"),
        _entity(Role.GATEWAY, Purpose.ENC, 2 * _YEAR, "GW_WAN_ENC_CRT"),
        _entity(Role.GATEWAY_PRE, Purpose.TLS, _YEAR, "GW_WAN_TLS_CRT_PRE"),
        _entity(Role.GATEWAY_PRE, Purpose.SIG, _YEAR, "GW_WAN_SIG_CRT_PRE"),
        _entity(Role.GATEWAY_PRE, Purpose.ENC, _YEAR, "GW_WAN_ENC_CRT_PRE"),
        _entity(Role.TECHNICIAN, Purpose.TLS, _YEAR),
        _entity(Role.METER, Purpose.TLS, 8 * _YEAR),
        _entity(Role.CONSUMER, Purpose.TLS, 2 * _YEAR),
    )
}

PROFILES_BY_POLICY: dict[str, CertificateProfile] = {p.policy_oid: p for p in PROFILES.values()}


def profile(name: str) -> CertificateProfile:
    """The profile called ``name`` (``gateway-tls``, ``emt-enc``, ``root``…)."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise CertificateRejected(
            Reason.WRONG_ROLE, f"unknown certificate profile {name!r} (known: {known})"
        ) from None


def profile_for(role: Role, purpose: Purpose) -> CertificateProfile:
    for p in PROFILES.values():
        if p.role is role and p.purpose is purpose:
            return p
    raise CertificateRejected(Reason.WRONG_ROLE, f"no profile for {role.value}/{purpose.value}")

"""A persistent SM-PKI in one directory: Root-CA, Sub-CAs, what they issued, their CRLs.

Layout (all PEM unless noted; every write is atomic: temp file, fsync, rename)::

    DIR/pki.json                 settings: curve, CRL base URL, organisation, CA names
    DIR/ca/<name>/cert.pem       CA certificate
    DIR/ca/<name>/key.pem        CA private key (mode 0600; encrypted if a passphrase is set)
    DIR/ca/<name>/crl.der        the CA's current CRL (DER, as served over HTTP)
    DIR/issued/<serial>.pem      every certificate issued, named by hex serial
    DIR/index.json               one record per issued certificate (status, revocation)

A lock file serialises writers, so several ``imsys pki`` commands may run at once.
The CA keys of this development PKI are software keys on disk; the real SM-PKI keeps them in
HSMs – :class:`~imsys.pki.authority.CertificateAuthority` accepts any key handle for that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import CertificateRejected, Reason, UsageError
from imsys.crypto.primitives import DEFAULT_CURVE, SoftwareKey, curve_profile
from imsys.pki.authority import CertificateAuthority, IssuanceRequest
from imsys.pki.builder import REVOCATION_REASONS, RevokedEntry, load_csr, verify_csr
from imsys.pki.profiles import Role, profile
from imsys.pki.validation import PathValidator, StaticCrlSource, common_name

FORMAT_VERSION = 1
ROOT = "root"
DEFAULT_SUB_CA = "sub-ca"
DEFAULT_CRL_BASE_URL = "http://127.0.0.1:8480"
PASSPHRASE_ENV = "IMSYS_PKI_PASSPHRASE"


@dataclass(frozen=True)
class IssuedRecord:
    """One line of the PKI's index."""

    serial: int
    ca: str
    profile: str
    identifier: str
    not_before: str
    not_after: str
    status: str = "valid"  # valid | revoked
    revoked_at: str | None = None
    reason: str | None = None
    replaces: int | None = None

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"

    @property
    def file_name(self) -> str:
        return f"{self.serial_hex}.pem"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def pem(obj: x509.Certificate | x509.CertificateRevocationList
        | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes) -> x509.Certificate:
    """PEM or DER certificate; ``CertificateRejected(MALFORMED)`` on anything else."""
    try:
        if data.lstrip().startswith(b"-----"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise CertificateRejected(Reason.MALFORMED, f"cannot parse certificate: {exc}") from exc
    return parsed(cert)


def parsed(cert: x509.Certificate) -> x509.Certificate:
    """Force ``cryptography``'s lazy parser through every field imsys reads.

    A certificate that loads may still hold a broken subject or extension that only fails
    when first touched; this turns such a certificate into ``CertificateRejected(MALFORMED)``
    at the door instead of a ``ValueError`` deep inside a role.
    """
    try:
        cert.version  # noqa: B018
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        list(cert.extensions)
        cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
        cert.public_key()
    except (ValueError, x509.InvalidVersion) as exc:
        raise CertificateRejected(Reason.MALFORMED, f"cannot parse certificate: {exc}") from exc
    except Exception as exc:  # UnsupportedAlgorithm for unknown key types
        raise CertificateRejected(Reason.UNSUPPORTED_ALGORITHM,
                                  f"unsupported certificate content: {exc}") from exc
    return cert


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle (or one DER certificate)."""
    if not data.lstrip().startswith(b"-----"):
        return [load_certificate(data)]
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateRejected(Reason.MALFORMED, f"cannot parse certificates: {exc}") from exc
    return [parsed(c) for c in certs]


class PkiDirectory:
    """The development SM-PKI on disk (see module docstring for the layout)."""

    def __init__(self, path: Path, settings: dict[str, Any], clock: Clock,
                 passphrase: bytes | None) -> None:
        self.path = path
        self.settings = settings
        self.clock = clock
        self._passphrase = passphrase
        self._cas: dict[str, CertificateAuthority] = {}

    # ------------------------------------------------------------------ creation

    @classmethod
    def init(cls, path: Path | str, *, curve: str = DEFAULT_CURVE,
             sub_cas: tuple[str, ...] = (DEFAULT_SUB_CA,),
             crl_base_url: str = DEFAULT_CRL_BASE_URL, organization: str = "imsys",
             clock: Clock | None = None, passphrase: bytes | None = None,
             crl_lifetime: timedelta = timedelta(days=7)) -> PkiDirectory:
        """Create Root-CA and Sub-CAs in an empty (or new) directory."""
        path = Path(path)
        curve_profile(curve)
        if (path / "pki.json").exists():
            raise UsageError(f"{path} already holds a PKI (pki.json exists)")
        if not sub_cas:
            raise UsageError("a PKI needs at least one Sub-CA")
        if len(set(sub_cas)) != len(sub_cas) or ROOT in sub_cas:
            raise UsageError("Sub-CA names must be unique and not 'root'")
        clock = clock or SystemClock()
        passphrase = passphrase if passphrase is not None else _env_passphrase()
        path.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "version": FORMAT_VERSION, "curve": curve, "crl_base_url": crl_base_url.rstrip("/"),
            "organization": organization, "sub_cas": list(sub_cas),
            "default_sub_ca": sub_cas[0], "crl_lifetime_s": int(crl_lifetime.total_seconds()),
            "encrypted_keys": passphrase is not None,
        }
        pki = cls(path, settings, clock, passphrase)
        with pki._locked():
            root = CertificateAuthority.create_root(
                ROOT, SoftwareKey.generate(curve), f"{organization} SM-PKI Root",
                organization=organization, crl_url=pki._crl_url(ROOT), clock=clock)
            pki._store_ca(root)
            records = []
            for name in sub_cas:
                sub = root.create_sub_ca(name, SoftwareKey.generate(curve),
                                         f"{organization} Sub-CA {name}",
                                         organization=organization, crl_url=pki._crl_url(name))
                pki._store_ca(sub)
                records.append(pki._record(sub.certificate, ROOT, "sub-ca"))
            pki._write_index(records)
            atomic_write(path / "pki.json", json.dumps(settings, indent=2).encode())
            for name in (ROOT, *sub_cas):
                pki._write_crl(name, records)
        return pki

    @classmethod
    def open(cls, path: Path | str, *, clock: Clock | None = None,
             passphrase: bytes | None = None) -> PkiDirectory:
        path = Path(path)
        try:
            settings = json.loads((path / "pki.json").read_text())
        except FileNotFoundError:
            raise UsageError(f"{path} holds no PKI; create one with `imsys pki init {path}`"
                             ) from None
        if settings.get("version") != FORMAT_VERSION:
            raise UsageError(f"{path}: unsupported PKI format {settings.get('version')}")
        return cls(path, settings, clock or SystemClock(),
                   passphrase if passphrase is not None else _env_passphrase())

    # ------------------------------------------------------------------ CAs

    @property
    def ca_names(self) -> list[str]:
        return [ROOT, *self.settings["sub_cas"]]

    @property
    def root(self) -> CertificateAuthority:
        return self.ca(ROOT)

    def ca(self, name: str | None = None) -> CertificateAuthority:
        name = name or self.settings["default_sub_ca"]
        if name not in self.ca_names:
            raise UsageError(f"no CA named {name!r} (known: {', '.join(self.ca_names)})")
        if name not in self._cas:
            folder = self.path / "ca" / name
            cert = load_certificate((folder / "cert.pem").read_bytes())
            key = SoftwareKey.from_pem((folder / "key.pem").read_bytes(), self._passphrase)
            self._cas[name] = CertificateAuthority(name, key, cert, crl_url=self._crl_url(name),
                                                   clock=self.clock)
        return self._cas[name]

    def chain(self, ca_name: str | None = None) -> list[x509.Certificate]:
        """The chain above certificates issued by ``ca_name``: [Sub-CA, Root]."""
        ca = self.ca(ca_name)
        return [ca.certificate] if ca.name == ROOT else [ca.certificate, self.root.certificate]

    def _crl_url(self, name: str) -> str:
        return f"{self.settings['crl_base_url']}/{name}.crl"

    def _store_ca(self, ca: CertificateAuthority) -> None:
        folder = self.path / "ca" / ca.name
        assert isinstance(ca.key, SoftwareKey)
        atomic_write(folder / "key.pem", ca.key.private_key_pem(self._passphrase), 0o600)
        atomic_write(folder / "cert.pem", pem(ca.certificate))
        self._cas[ca.name] = ca

    # ------------------------------------------------------------------ issuance

    def issue(self, profile_name: str, identifier: str, *,
              csr: x509.CertificateSigningRequest | bytes | None = None,
              public_key: ec.EllipticCurvePublicKey | None = None, ca: str | None = None,
              validity: timedelta | None = None, dns_names: tuple[str, ...] = (),
              ip_addresses: tuple[str, ...] = (), organization: str | None = None,
              replaces: int | None = None) -> x509.Certificate:
        """Issue an end-entity certificate from a request (or, for tests, a public key)."""
        p = profile(profile_name)
        if p.role in (Role.ROOT, Role.SUB_CA):
            raise UsageError("CA certificates are made by `init` (Root-CA and Sub-CAs)")
        if (csr is None) == (public_key is None):
            raise UsageError("give exactly one of csr or public_key")
        if csr is not None:
            request = load_csr(csr) if isinstance(csr, bytes) else csr
            public_key = verify_csr(request)
        assert public_key is not None
        authority = self.ca(ca)
        if authority.name == ROOT:
            raise UsageError("the Root-CA issues only Sub-CA certificates; name a Sub-CA")
        with self._locked():
            records = self._read_index()
            cert = authority.issue_for_key(public_key, IssuanceRequest(
                p, identifier, organization or self.settings["organization"], validity,
                dns_names, ip_addresses))
            record = self._record(cert, authority.name, p.name, replaces)
            self._write_index([*records, record])
        return cert

    def issue_with_new_key(self, profile_name: str, identifier: str, **kwargs: Any
                           ) -> tuple[SoftwareKey, x509.Certificate]:
        """Generate a software key pair and certify it (for market participants and tests;
        gateways generate theirs in the security module and send a request)."""
        key = SoftwareKey.generate(kwargs.pop("curve", self.settings["curve"]))
        return key, self.issue(profile_name, identifier, public_key=key.public_key(), **kwargs)

    def renew(self, serial: int, *, csr: x509.CertificateSigningRequest | bytes | None = None,
              public_key: ec.EllipticCurvePublicKey | None = None,
              revoke_old: bool = False) -> x509.Certificate:
        """A successor for certificate ``serial`` with the same profile and subject.

        With neither ``csr`` nor ``public_key`` the old key is re-certified; ``revoke_old``
        revokes the predecessor as ``superseded``.
        """
        old = self.record(serial)
        if old.profile == "sub-ca":
            raise UsageError("Sub-CA renewal is not supported by this development PKI")
        if old.status != "valid":
            raise CertificateRejected(Reason.REVOKED, f"certificate {old.serial_hex} is revoked")
        if csr is None and public_key is None:
            public_key = self.certificate(serial).public_key()  # type: ignore[assignment]
        cert = self.issue(old.profile, old.identifier, csr=csr, public_key=public_key,
                          ca=old.ca, replaces=old.serial)
        if revoke_old:
            self.revoke(serial, "superseded")
        return cert

    def revoke(self, serial: int, reason: str = "unspecified") -> IssuedRecord:
        """Revoke and publish a fresh CRL of the issuing CA at once."""
        if reason not in REVOCATION_REASONS:
            raise UsageError(f"unknown reason {reason!r}; one of {', '.join(REVOCATION_REASONS)}")
        with self._locked():
            records = self._read_index()
            index = next((i for i, r in enumerate(records) if r.serial == serial), None)
            if index is None:
                raise UsageError(f"no certificate with serial {serial:x} in this PKI")
            rec = records[index]
            if rec.status == "revoked":
                return rec
            updated = replace(rec, status="revoked", reason=reason,
                              revoked_at=self.clock.now().replace(microsecond=0).isoformat())
            records[index] = updated
            self._write_index(records)
            self._write_crl(rec.ca, records)
        return updated

    # ------------------------------------------------------------------ CRLs

    def crl(self, ca_name: str | None = None, *, refresh_within: timedelta = timedelta(days=1)
            ) -> x509.CertificateRevocationList:
        """The CA's current CRL; a new one is signed when it is missing or about to expire."""
        name = ca_name or self.settings["default_sub_ca"]
        self.ca(name)
        path = self.path / "ca" / name / "crl.der"
        if path.exists():
            crl = x509.load_der_x509_crl(path.read_bytes())
            if crl.next_update_utc is not None and \
                    crl.next_update_utc - refresh_within > self.clock.now():
                return crl
        with self._locked():
            return self._write_crl(name, self._read_index())

    def publish_crls(self) -> dict[str, x509.CertificateRevocationList]:
        """Sign a fresh CRL for every CA."""
        with self._locked():
            records = self._read_index()
            return {name: self._write_crl(name, records) for name in self.ca_names}

    def crl_der(self, ca_name: str) -> bytes:
        return self.crl(ca_name).public_bytes(serialization.Encoding.DER)

    def _write_crl(self, name: str, records: list[IssuedRecord]
                   ) -> x509.CertificateRevocationList:
        folder = self.path / "ca" / name
        state_path = folder / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {"crl_number": 0}
        state["crl_number"] += 1
        revoked = [
            RevokedEntry(r.serial, datetime.fromisoformat(r.revoked_at or ""), r.reason or
                         "unspecified")
            for r in records if r.ca == name and r.status == "revoked"
        ]
        crl = self.ca(name).crl(revoked, state["crl_number"],
                                timedelta(seconds=self.settings["crl_lifetime_s"]))
        atomic_write(folder / "crl.der", crl.public_bytes(serialization.Encoding.DER))
        atomic_write(state_path, json.dumps(state).encode())
        return crl

    # ------------------------------------------------------------------ queries

    def records(self) -> list[IssuedRecord]:
        return self._read_index()

    def record(self, serial: int) -> IssuedRecord:
        for rec in self._read_index():
            if rec.serial == serial:
                return rec
        raise UsageError(f"no certificate with serial {serial:x} in this PKI")

    def certificate(self, serial: int) -> x509.Certificate:
        rec = self.record(serial)
        return load_certificate((self.path / "issued" / rec.file_name).read_bytes())

    def find(self, identifier: str, profile_name: str | None = None) -> list[x509.Certificate]:
        """Valid certificates of a participant, newest first."""
        found = [r for r in self._read_index() if r.identifier == identifier
                 and r.status == "valid" and (profile_name is None or r.profile == profile_name)]
        found.sort(key=lambda r: r.not_before, reverse=True)
        return [self.certificate(r.serial) for r in found]

    def validator(self, *, clock: Clock | None = None, require_crl: bool = True
                  ) -> PathValidator:
        """A path validator anchored at this PKI's root, with its Sub-CAs and current CRLs."""
        crls = StaticCrlSource(self.crl(name) for name in self.ca_names)
        return PathValidator([self.root.certificate],
                             [self.ca(n).certificate for n in self.settings["sub_cas"]],
                             crls, clock=clock or self.clock, require_crl=require_crl)

    # ------------------------------------------------------------------ storage

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _record(self, cert: x509.Certificate, ca: str, profile_name: str,
                replaces: int | None = None) -> IssuedRecord:
        record = IssuedRecord(cert.serial_number, ca, profile_name, common_name(cert),
                              cert.not_valid_before_utc.isoformat(),
                              cert.not_valid_after_utc.isoformat(), replaces=replaces)
        atomic_write(self.path / "issued" / record.file_name, pem(cert))
        return record

    def _read_index(self) -> list[IssuedRecord]:
        path = self.path / "index.json"
        if not path.exists():
            return []
        return [IssuedRecord(**item) for item in json.loads(path.read_text())]

    def _write_index(self, records: list[IssuedRecord]) -> None:
        atomic_write(self.path / "index.json",
                      json.dumps([asdict(r) for r in records], indent=1).encode())


def _env_passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None

"""CRL-aware certification path validation for brainpool chains (RFC 5280 §6, profiled).

``cryptography``'s own verifier refuses brainpool curves, and OpenSSL's does not know the
imsys profiles, so the SM-PKI path validation is done here, step by step, each failure a
:class:`~imsys.core.errors.CertificateRejected` with its :class:`~imsys.core.errors.Reason`:

1. every key on a permitted brainpool curve (``WRONG_CURVE``);
2. issuer found by name among the given chain, the known Sub-CAs and the trust anchors
   (``UNKNOWN_ISSUER``; an issuer that matches only by key identifier: ``NAME_CHAINING``);
3. signature by the issuer, ECDSA with the hash matched to the issuer's curve
   (``BAD_SIGNATURE``, ``UNSUPPORTED_ALGORITHM``);
4. validity at the validation time (``EXPIRED``, ``NOT_YET_VALID``);
5. issuers are CAs with keyCertSign and within their path length (``NOT_A_CA``,
   ``WRONG_KEY_USAGE``, ``PATH_LENGTH_EXCEEDED``);
6. revocation: the issuer's CRL, itself verified and current (``CRL_UNAVAILABLE``,
   ``CRL_INVALID``, ``REVOKED``);
7. the end entity fits the expected profile: key usage, then role policy
   (``WRONG_KEY_USAGE``, ``WRONG_ROLE``).

Signature checks are cached per (issuer, certificate) and per CRL, keyed by the SHA-256 of
the full DER encoding; time and revocation checks run on every call.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import CertificateRejected, KeyRejected, Reason
from imsys.crypto.primitives import check_public_key, curve_profile, ecdsa_verify
from imsys.pki.profiles import PROFILES_BY_POLICY, CertificateProfile, KeyUsage, profile

_KU_ATTR = {
    KeyUsage.DIGITAL_SIGNATURE: "digital_signature",
    KeyUsage.NON_REPUDIATION: "content_commitment",
    KeyUsage.KEY_AGREEMENT: "key_agreement",
    KeyUsage.KEY_CERT_SIGN: "key_cert_sign",
    KeyUsage.CRL_SIGN: "crl_sign",
}
_CACHE_LIMIT = 50_000
_CLOCK_TOLERANCE = timedelta(minutes=5)


def describe(cert: x509.Certificate) -> str:
    """``CN=… (serial 0x…)`` for messages and logs."""
    return f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:#x})"


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def key_usages(cert: x509.Certificate) -> frozenset[KeyUsage]:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    result = set()
    for usage, attr in _KU_ATTR.items():
        # decipher_only/encipher_only raise unless key_agreement; the attrs used here never do
        if getattr(ku, attr):
            result.add(usage)
    return frozenset(result)


def certificate_profile(cert: x509.Certificate) -> CertificateProfile | None:
    """The imsys profile a certificate was issued under, from its policy OID."""
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return None
    for info in policies:
        found = PROFILES_BY_POLICY.get(info.policy_identifier.dotted_string)
        if found is not None:
            return found
    return None


def _fp(obj: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return hashlib.sha256(obj.public_bytes(serialization.Encoding.DER)).digest()


@dataclass(frozen=True)
class ValidatedPath:
    """A path that passed every check: ``certificates[0]`` is the end entity."""

    certificates: tuple[x509.Certificate, ...]
    profile: CertificateProfile | None
    validated_at: datetime

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def identifier(self) -> str:
        """The participant's identifier (the leaf's common name)."""
        return common_name(self.leaf)


class CrlSource(Protocol):
    """Where the validator gets the CRL that covers ``cert`` (issued by ``issuer``)."""

    def crl_for(self, cert: x509.Certificate, issuer: x509.Certificate
                ) -> x509.CertificateRevocationList | None: ...


class StaticCrlSource:
    """CRLs handed in by the caller (from a PKI directory, a configuration, a test)."""

    def __init__(self, crls: Iterable[x509.CertificateRevocationList] = ()) -> None:
        self._crls: dict[bytes, x509.CertificateRevocationList] = {}
        for crl in crls:
            self.add(crl)

    def add(self, crl: x509.CertificateRevocationList) -> None:
        """Keep the CRL with the highest CRL number per issuer."""
        key = crl.issuer.public_bytes()
        current = self._crls.get(key)
        if current is None or _crl_number(crl) >= _crl_number(current):
            self._crls[key] = crl

    def crl_for(self, cert: x509.Certificate, issuer: x509.Certificate
                ) -> x509.CertificateRevocationList | None:
        return self._crls.get(issuer.subject.public_bytes())


class HttpCrlSource:
    """Fetch CRLs from the certificate's CRL distribution points (``http://`` only).

    A fetched CRL is kept until its nextUpdate (as seen by ``clock``); fetch errors yield
    ``None`` so the validator reports ``CRL_UNAVAILABLE``.
    """

    def __init__(self, clock: Clock | None = None, timeout: float = 5.0,
                 fallback: CrlSource | None = None) -> None:
        self._clock = clock or SystemClock()
        self._timeout = timeout
        self._fallback = fallback
        self._cache: dict[str, x509.CertificateRevocationList] = {}
        self._lock = threading.Lock()

    def crl_for(self, cert: x509.Certificate, issuer: x509.Certificate
                ) -> x509.CertificateRevocationList | None:
        for url in crl_urls(cert):
            crl = self._get(url)
            if crl is not None:
                return crl
        return self._fallback.crl_for(cert, issuer) if self._fallback else None

    def _get(self, url: str) -> x509.CertificateRevocationList | None:
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and (cached.next_update_utc is None or cached.next_update_utc > now):
            return cached
        if not url.startswith("http://"):
            return None
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                data = response.read(4 * 1024 * 1024)
            crl = x509.load_der_x509_crl(data) if not data.startswith(b"-----") \
                else x509.load_pem_x509_crl(data)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        with self._lock:
            self._cache[url] = crl
        return crl


def crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_oid(
            ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                urls.append(name.value)
    return urls


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


ProfileSpec = str | CertificateProfile | Sequence[str | CertificateProfile] | None


class PathValidator:
    """Validates certificates against the SM-PKI trust anchors (never the system store)."""

    def __init__(self, trust_anchors: Iterable[x509.Certificate],
                 intermediates: Iterable[x509.Certificate] = (),
                 crls: CrlSource | Iterable[x509.CertificateRevocationList] | None = None, *,
                 clock: Clock | None = None, require_crl: bool = True, max_depth: int = 5) -> None:
        self._anchors = list(trust_anchors)
        if not self._anchors:
            raise CertificateRejected(Reason.UNKNOWN_ISSUER, "no trust anchor given")
        self._anchor_fps = {_fp(a) for a in self._anchors}
        self._intermediates: list[x509.Certificate] = []
        for cert in intermediates:
            self.add_intermediate(cert)
        if crls is None or isinstance(crls, list | tuple):
            self._crls: CrlSource = StaticCrlSource(crls or ())
        else:
            self._crls = crls  # type: ignore[assignment]
        self._clock = clock or SystemClock()
        self.require_crl = require_crl
        self._max_depth = max_depth
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(self._anchors)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return tuple(self._intermediates)

    def add_intermediate(self, cert: x509.Certificate) -> None:
        if cert not in self._intermediates:
            self._intermediates.append(cert)

    def add_crl(self, crl: x509.CertificateRevocationList) -> None:
        if not isinstance(self._crls, StaticCrlSource):
            raise TypeError("add_crl needs the validator's own static CRL source")
        self._crls.add(crl)

    # ------------------------------------------------------------------ validation

    def validate(self, cert: x509.Certificate, *, profile: ProfileSpec = None,
                 at: datetime | None = None, chain: Sequence[x509.Certificate] = ()
                 ) -> ValidatedPath:
        """Validate ``cert`` (plus any ``chain`` the peer sent) at ``at`` (default: now)."""
        try:
            return self._validate(cert, profile, at, chain)
        except ValueError as exc:  # a lazily parsed field of a broken certificate
            raise CertificateRejected(Reason.MALFORMED, f"malformed certificate: {exc}") from exc

    def _validate(self, cert: x509.Certificate, profile: ProfileSpec, at: datetime | None,
                  chain: Sequence[x509.Certificate]) -> ValidatedPath:
        when = at or self._clock.now()
        path = self._build_path(cert, chain)
        for index, current in enumerate(path):
            self._check_key(current)
            self._check_validity(current, when)
            if index + 1 < len(path):
                issuer = path[index + 1]
                self._check_issuer(issuer, below=index)
                self._check_signature(current, issuer)
                self._check_revocation(current, issuer, when)
        leaf_profile = self._check_profile(path[0], profile)
        return ValidatedPath(tuple(path), leaf_profile, when)

    def _build_path(self, cert: x509.Certificate, chain: Sequence[x509.Certificate]
                    ) -> list[x509.Certificate]:
        path = [cert]
        pool = [*chain, *self._intermediates]
        current = cert
        while _fp(current) not in self._anchor_fps:
            if len(path) > self._max_depth:
                raise CertificateRejected(Reason.PATH_LENGTH_EXCEEDED,
                                          f"no anchor within {self._max_depth} certificates",
                                          certificate=describe(cert))
            issuer = self._find_issuer(current, pool)
            if _fp(issuer) == _fp(current):
                # self-signed and not an anchor: an unknown root
                raise CertificateRejected(Reason.UNKNOWN_ISSUER,
                                          f"self-signed certificate {describe(current)} is not a "
                                          "trust anchor", certificate=describe(current))
            path.append(issuer)
            current = issuer
        return path

    def _find_issuer(self, cert: x509.Certificate, pool: list[x509.Certificate]
                     ) -> x509.Certificate:
        candidates = [c for c in (*self._anchors, *pool) if c.subject == cert.issuer]
        aki = _authority_key_id(cert)
        if aki is not None:
            matching = [c for c in candidates if _subject_key_id(c) in (aki, None)]
            if matching:
                return matching[0]
        elif candidates:
            return candidates[0]
        if aki is not None and any(_subject_key_id(c) == aki for c in (*self._anchors, *pool)):
            raise CertificateRejected(
                Reason.NAME_CHAINING,
                f"issuer name {cert.issuer.rfc4514_string()} of {describe(cert)} does not match "
                "the subject of the CA holding its authority key", certificate=describe(cert))
        raise CertificateRejected(
            Reason.UNKNOWN_ISSUER,
            f"issuer {cert.issuer.rfc4514_string()} of {describe(cert)} is not a known SM-PKI CA",
            certificate=describe(cert), issuer=cert.issuer.rfc4514_string())

    @staticmethod
    def _check_key(cert: x509.Certificate) -> None:
        try:
            check_public_key(cert.public_key())
        except KeyRejected as exc:
            raise CertificateRejected(Reason.WRONG_CURVE,
                                      f"{describe(cert)}: {exc.message}",
                                      certificate=describe(cert)) from exc
        except ValueError as exc:  # unsupported key encodings
            raise CertificateRejected(Reason.WRONG_CURVE, f"{describe(cert)}: {exc}",
                                      certificate=describe(cert)) from exc

    @staticmethod
    def _check_validity(cert: x509.Certificate, when: datetime) -> None:
        if when < cert.not_valid_before_utc:
            raise CertificateRejected(
                Reason.NOT_YET_VALID,
                f"{describe(cert)} is valid only from {cert.not_valid_before_utc.isoformat()}",
                certificate=describe(cert))
        if when > cert.not_valid_after_utc:
            raise CertificateRejected(
                Reason.EXPIRED,
                f"{describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}",
                certificate=describe(cert))

    @staticmethod
    def _check_issuer(issuer: x509.Certificate, below: int) -> None:
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise CertificateRejected(Reason.NOT_A_CA,
                                      f"{describe(issuer)} is not a CA but issued a certificate",
                                      certificate=describe(issuer))
        if KeyUsage.KEY_CERT_SIGN not in key_usages(issuer):
            raise CertificateRejected(Reason.WRONG_KEY_USAGE,
                                      f"{describe(issuer)} lacks keyCertSign",
                                      certificate=describe(issuer))
        # ``below`` counts the intermediate CA certificates that follow the issuer in the path
        if bc.path_length is not None and below > bc.path_length:
            raise CertificateRejected(Reason.PATH_LENGTH_EXCEEDED,
                                      f"{describe(issuer)} allows {bc.path_length} CA(s) below",
                                      certificate=describe(issuer))

    def _verify_once(self, key: bytes, public_key: ec.EllipticCurvePublicKey, signature: bytes,
                     data: bytes, algorithm: hashes.HashAlgorithm | None, what: str,
                     reason: Reason) -> None:
        with self._lock:
            if key in self._verified:
                return
        if not isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
            raise CertificateRejected(Reason.UNSUPPORTED_ALGORITHM,
                                      f"{what}: signature algorithm is not ECDSA-SHA2")
        expected = curve_profile(public_key).hash
        if not isinstance(algorithm, expected):
            raise CertificateRejected(
                Reason.UNSUPPORTED_ALGORITHM,
                f"{what}: signed with {algorithm.name}, the issuer curve "
                f"{public_key.curve.name} demands {expected.name}")
        try:
            ecdsa_verify(public_key, signature, data, algorithm)
        except KeyRejected as exc:
            raise CertificateRejected(reason, f"{what}: signature does not verify") from exc
        with self._lock:
            if len(self._verified) > _CACHE_LIMIT:
                self._verified.clear()
            self._verified.add(key)

    def _check_signature(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        try:
            algorithm = cert.signature_hash_algorithm
            parameters = cert.signature_algorithm_parameters
        except (UnsupportedAlgorithm, ValueError) as exc:
            raise CertificateRejected(Reason.UNSUPPORTED_ALGORITHM,
                                      f"{describe(cert)}: {exc}") from exc
        if not isinstance(parameters, ec.ECDSA):
            raise CertificateRejected(Reason.UNSUPPORTED_ALGORITHM,
                                      f"{describe(cert)} is not ECDSA-signed")
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        self._verify_once(b"c" + _fp(issuer) + _fp(cert), issuer_key, cert.signature,
                          cert.tbs_certificate_bytes, algorithm, describe(cert),
                          Reason.BAD_SIGNATURE)

    def _check_revocation(self, cert: x509.Certificate, issuer: x509.Certificate,
                          when: datetime) -> None:
        crl = self._crls.crl_for(cert, issuer)
        if crl is None:
            if self.require_crl:
                raise CertificateRejected(
                    Reason.CRL_UNAVAILABLE,
                    f"no CRL of {issuer.subject.rfc4514_string()} to check {describe(cert)}",
                    certificate=describe(cert))
            return
        if crl.issuer != issuer.subject:
            raise CertificateRejected(Reason.CRL_INVALID,
                                      f"CRL issuer {crl.issuer.rfc4514_string()} is not "
                                      f"{issuer.subject.rfc4514_string()}")
        if KeyUsage.CRL_SIGN not in key_usages(issuer):
            raise CertificateRejected(Reason.CRL_INVALID, f"{describe(issuer)} lacks cRLSign")
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        try:
            algorithm = crl.signature_hash_algorithm
        except (UnsupportedAlgorithm, ValueError) as exc:
            raise CertificateRejected(Reason.CRL_INVALID, f"CRL algorithm: {exc}") from exc
        self._verify_once(b"r" + _fp(issuer) + _fp(crl), issuer_key, crl.signature,
                          crl.tbs_certlist_bytes, algorithm,
                          f"CRL of {issuer.subject.rfc4514_string()}", Reason.CRL_INVALID)
        # a CRL newer than the validation time is fine (historical validation); one from
        # beyond our own clock means someone's clock is wrong
        if crl.last_update_utc > self._clock.now() + _CLOCK_TOLERANCE:
            raise CertificateRejected(Reason.CRL_INVALID,
                                      f"CRL of {issuer.subject.rfc4514_string()} is issued in "
                                      "the future")
        if crl.next_update_utc is not None and crl.next_update_utc < when:
            raise CertificateRejected(
                Reason.CRL_UNAVAILABLE,
                f"CRL of {issuer.subject.rfc4514_string()} is out of date since "
                f"{crl.next_update_utc.isoformat()}", certificate=describe(cert))
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= when:
            try:
                why = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                why = "unspecified"
            raise CertificateRejected(
                Reason.REVOKED,
                f"{describe(cert)} was revoked at {entry.revocation_date_utc.isoformat()} ({why})",
                certificate=describe(cert), revocation_reason=why)

    @staticmethod
    def _check_profile(cert: x509.Certificate, spec: ProfileSpec) -> CertificateProfile | None:
        found = certificate_profile(cert)
        if spec is None:
            return found
        wanted = [spec] if isinstance(spec, str | CertificateProfile) else list(spec)
        profiles = [profile(w) if isinstance(w, str) else w for w in wanted]
        usages = key_usages(cert)
        if not any(p.key_usage <= usages for p in profiles):
            names = ", ".join(p.name for p in profiles)
            raise CertificateRejected(
                Reason.WRONG_KEY_USAGE,
                f"{describe(cert)} has key usage {sorted(u.value for u in usages)}, "
                f"not that of {names}", certificate=describe(cert))
        if found is None or found not in profiles:
            names = ", ".join(p.name for p in profiles)
            raise CertificateRejected(
                Reason.WRONG_ROLE,
                f"{describe(cert)} is a {found.name if found else 'foreign'} certificate, "
                f"expected {names}", certificate=describe(cert))
        return found


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None

"""TLS policy of TR-03116-3 for the WAN, HAN and LMN interfaces as ``ssl.SSLContext`` factories.

What every context enforces (spec/facts.md §2.1, from BSI's TaSK test-suite data):

* TLS 1.2 only. TLS 1.3 is optional in TR-03116-3 and needs OpenSSL ≥ 3.2 for brainpool
  certificates (``brainpoolP256r1tls13``…); it is enabled by ``allow_tls13=True`` only where the
  linked OpenSSL has it.
* Cipher suites ``TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256`` (0xC023, required),
  ``…_AES_128_GCM_SHA256`` (0xC02B) and ``…_AES_256_GCM_SHA384`` (0xC02C); nothing else.
* Key-exchange groups brainpoolP256r1/P384r1/P512r1 and NIST P-256/P-384 (the only place NIST
  curves are allowed); signature algorithms ECDSA with SHA-256/384/512.
* Mutual authentication; the peer chain is checked against the SM-PKI trust anchors only –
  never the system trust store – and then by :class:`imsys.pki.PathValidator` (roles, key
  usage, CRL) through :func:`check_peer`.
* Maximum session lifetime: 48 h on WAN and HAN, 744 h (31 days) on the LMN, enforced for
  session resumption (``SSL_CTX_set_timeout``) and, for long-lived connections, by
  :func:`check_session_age`.

Python's ``ssl`` module exposes neither the groups list nor the signature-algorithm list nor
the session timeout. They are set through OpenSSL's C API on the context's ``SSL_CTX`` with
ctypes (:func:`_openssl_ctx_ctrl`); if that is impossible on a platform the context falls back
to ``set_ecdh_curve("brainpoolP256r1")``, which still satisfies the policy with one group.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.errors import CertificateRejected, Reason, TlsRejected
from imsys.crypto.primitives import SoftwareKey

if TYPE_CHECKING:
    from imsys.pki.validation import PathValidator, ProfileSpec, ValidatedPath


class Interface(StrEnum):
    WAN = "wan"
    HAN = "han"
    LMN = "lmn"


#: TLS 1.2 suites in OpenSSL names: 0xC023, 0xC02B, 0xC02C.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
)
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_AES_128_CCM_SHA256")
GROUPS = ("brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "P-256", "P-384")
TLS13_GROUPS = ("brainpoolP256r1tls13", "brainpoolP384r1tls13", "brainpoolP512r1tls13",
                "P-256", "P-384")
SIGALGS = ("ECDSA+SHA256", "ECDSA+SHA384", "ECDSA+SHA512")


@dataclass(frozen=True)
class TlsPolicy:
    interface: Interface
    ciphers: tuple[str, ...]
    groups: tuple[str, ...]
    sigalgs: tuple[str, ...]
    max_session_lifetime: timedelta


POLICIES: dict[Interface, TlsPolicy] = {
    Interface.WAN: TlsPolicy(Interface.WAN, TLS12_CIPHERS, GROUPS, SIGALGS, timedelta(hours=48)),
    Interface.HAN: TlsPolicy(Interface.HAN, TLS12_CIPHERS, GROUPS, SIGALGS, timedelta(hours=48)),
    Interface.LMN: TlsPolicy(Interface.LMN, TLS12_CIPHERS, GROUPS, SIGALGS, timedelta(hours=744)),
}


@dataclass(frozen=True)
class TlsIdentity:
    """Own certificate chain (leaf first) and the TLS private key.

    The TLS handshake runs inside OpenSSL, which needs the private key in process: the key is
    handed over through a private temporary file that is removed at once. Keys meant for a
    hardware token would need an OpenSSL provider; see docs/protocols.md.
    """

    chain: tuple[x509.Certificate, ...]
    key: SoftwareKey | Path

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path) -> TlsIdentity:
        chain = tuple(x509.load_pem_x509_certificates(Path(cert_file).read_bytes()))
        return cls(chain, Path(key_file))


# --------------------------------------------------------------------------- OpenSSL glue

_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SIGALGS_LIST = 98
_SSL_CTRL_SET_CLIENT_SIGALGS_LIST = 102


def _libssl() -> ctypes.CDLL | None:
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long,
                                     ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        lib.SSL_CTX_set_timeout.restype = ctypes.c_long
        return lib
    except (OSError, AttributeError):  # pragma: no cover - exotic platforms
        return None


_LIB = _libssl()


def _ssl_ctx_pointer(context: ssl.SSLContext) -> int | None:
    """The ``SSL_CTX *`` inside CPython's ``_ssl._SSLContext`` (first field after the header)."""
    if _LIB is None:  # pragma: no cover
        return None
    header = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(id(context) + header).value
    return pointer or None


def _openssl_ctx_ctrl(context: ssl.SSLContext, command: int, value: str) -> bool:
    pointer = _ssl_ctx_pointer(context)
    if pointer is None or _LIB is None:  # pragma: no cover
        return False
    buffer = ctypes.create_string_buffer(value.encode())
    return _LIB.SSL_CTX_ctrl(pointer, command, 0, ctypes.cast(buffer, ctypes.c_void_p)) == 1


def _set_session_timeout(context: ssl.SSLContext, seconds: int) -> bool:
    pointer = _ssl_ctx_pointer(context)
    if pointer is None or _LIB is None:  # pragma: no cover
        return False
    _LIB.SSL_CTX_set_timeout(pointer, seconds)
    return True


def tls13_available() -> bool:
    """TLS 1.3 with brainpool certificates needs OpenSSL ≥ 3.2."""
    return ssl.OPENSSL_VERSION_INFO >= (3, 2)


# --------------------------------------------------------------------------- factories


def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in identity.chain)
    with tempfile.TemporaryDirectory(prefix="imsys-tls-") as folder:
        cert_path = Path(folder) / "chain.pem"
        cert_path.write_bytes(chain_pem)
        if isinstance(identity.key, Path):
            key_path = identity.key
        else:
            key_path = Path(folder) / "key.pem"
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(identity.key.private_key_pem())
        context.load_cert_chain(cert_path, key_path)


def _context(side: ssl._SSLMethod, interface: Interface, identity: TlsIdentity,
             trust_anchors: Sequence[x509.Certificate],
             intermediates: Sequence[x509.Certificate], allow_tls13: bool) -> ssl.SSLContext:
    policy = POLICIES[interface]
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = (
        ssl.TLSVersion.TLSv1_3 if allow_tls13 and tls13_available() else ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(":".join(policy.ciphers))
    groups = policy.groups
    if context.maximum_version is ssl.TLSVersion.TLSv1_3:
        groups = tuple(dict.fromkeys((*TLS13_GROUPS, *policy.groups)))
    if not _openssl_ctx_ctrl(context, _SSL_CTRL_SET_GROUPS_LIST, ":".join(groups)):
        context.set_ecdh_curve("brainpoolP256r1")  # pragma: no cover - fallback, see docstring
    sigalgs = ":".join(policy.sigalgs)
    _openssl_ctx_ctrl(context, _SSL_CTRL_SET_SIGALGS_LIST, sigalgs)
    _openssl_ctx_ctrl(context, _SSL_CTRL_SET_CLIENT_SIGALGS_LIST, sigalgs)
    _set_session_timeout(context, int(policy.max_session_lifetime.total_seconds()))
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    context.check_hostname = False  # SM-PKI identities are roles and ids, checked by check_peer
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if not trust_anchors:
        raise TlsRejected(Reason.TLS_POLICY, "no SM-PKI trust anchor given")
    # Known Sub-CAs join the store so peers that send only their own certificate verify;
    # OpenSSL still demands that every chain ends at a self-signed anchor (no PARTIAL_CHAIN).
    context.load_verify_locations(cadata="".join(
        c.public_bytes(serialization.Encoding.PEM).decode()
        for c in (*trust_anchors, *intermediates)))
    _load_identity(context, identity)
    return context


def server_context(interface: Interface, identity: TlsIdentity,
                   trust_anchors: Sequence[x509.Certificate], *,
                   intermediates: Sequence[x509.Certificate] = (), allow_tls13: bool = False
                   ) -> ssl.SSLContext:
    """A server context that demands a client certificate from the SM-PKI."""
    return _context(ssl.PROTOCOL_TLS_SERVER, interface, identity, trust_anchors, intermediates,
                    allow_tls13)


def client_context(interface: Interface, identity: TlsIdentity,
                   trust_anchors: Sequence[x509.Certificate], *,
                   intermediates: Sequence[x509.Certificate] = (), allow_tls13: bool = False
                   ) -> ssl.SSLContext:
    """A client context that authenticates itself and checks the server against the SM-PKI."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, interface, identity, trust_anchors, intermediates,
                    allow_tls13)


# --------------------------------------------------------------------------- after handshake


def peer_certificate(connection: ssl.SSLSocket | ssl.SSLObject) -> x509.Certificate:
    der = connection.getpeercert(binary_form=True)
    if not der:
        raise TlsRejected(Reason.TLS_POLICY, "peer presented no certificate")
    return x509.load_der_x509_certificate(der)


def peer_chain(connection: ssl.SSLSocket | ssl.SSLObject) -> list[x509.Certificate]:
    """The chain the peer sent where Python can tell (3.13+), else just its certificate."""
    getter = getattr(connection, "get_unverified_chain", None)
    if getter is not None:  # pragma: no cover - Python ≥ 3.13
        return [x509.load_der_x509_certificate(der) for der in getter() or []]
    return [peer_certificate(connection)]


def check_peer(connection: ssl.SSLSocket | ssl.SSLObject, validator: PathValidator,
               profile: ProfileSpec = None) -> ValidatedPath:
    """SM-PKI validation of the peer after the handshake (roles, key usage, CRL).

    Raises :class:`TlsRejected` with the certificate reason in ``context["cause"]``.
    """
    chain = peer_chain(connection)
    try:
        return validator.validate(chain[0], profile=profile, chain=chain[1:])
    except CertificateRejected as exc:
        raise TlsRejected(exc.reason, f"TLS peer refused: {exc.message}",
                          cause=exc.reason.value) from exc


def check_session_age(opened_at: datetime, now: datetime, interface: Interface) -> None:
    """Refuse to keep using a TLS session older than the interface's maximum lifetime."""
    limit = POLICIES[interface].max_session_lifetime
    if now - opened_at > limit:
        raise TlsRejected(Reason.SESSION_EXPIRED,
                          f"{interface.value.upper()} TLS session older than {limit}",
                          opened_at=opened_at.isoformat())

"""``imsys pki …`` – the development SM-PKI on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rich.table import Table
from rich.tree import Tree

from imsys.cli._common import console, default_pki_dir, handle_errors, read_file, write_file
from imsys.core.errors import UsageError
from imsys.crypto.primitives import CURVES, DEFAULT_CURVE, SoftwareKey
from imsys.pki import (
    PROFILES,
    HttpCrlSource,
    PkiDirectory,
    SubjectName,
    build_csr,
    certificate_profile,
    load_certificate,
    load_certificates,
    pem,
)
from imsys.pki.builder import REVOCATION_REASONS
from imsys.pki.directory import DEFAULT_CRL_BASE_URL, DEFAULT_SUB_CA
from imsys.pki.validation import PathValidator, common_name, crl_urls, key_usages

app = typer.Typer(help="The Smart-Metering PKI: Root-CA, Sub-CAs, certificates, CRLs.",
                  no_args_is_help=True)

PkiOption = typer.Option(None, "--pki", help="PKI directory [default: $IMSYS_PKI or ./pki]")
PROFILE_HELP = "Certificate profile: " + ", ".join(n for n in PROFILES if "ca" not in n)


def _open(path: Path | None) -> PkiDirectory:
    return PkiDirectory.open(path or default_pki_dir())


def _serial(pki: PkiDirectory, value: str) -> int:
    """A serial in hex (as `pki show` prints it), or the path of a certificate file."""
    candidate = Path(value)
    if candidate.exists():
        return load_certificate(candidate.read_bytes()).serial_number
    try:
        return int(value.removeprefix("0x"), 16)
    except ValueError:
        raise UsageError(f"{value!r} is neither a certificate file nor a hex serial") from None


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="Directory to create the PKI in."),
    sub_ca: list[str] = typer.Option([DEFAULT_SUB_CA], "--sub-ca",
                                     help="Name of a Sub-CA to create (repeatable)."),
    curve: str = typer.Option(DEFAULT_CURVE, help=f"CA key curve: {', '.join(CURVES)}"),
    crl_url: str = typer.Option(DEFAULT_CRL_BASE_URL, help="Base URL the CRLs are served at."),
    organization: str = typer.Option("imsys", "--org", help="Organisation in the CA names."),
) -> None:
    """Create a Root-CA and its Sub-CAs in DIRECTORY."""
    pki = PkiDirectory.init(directory, curve=curve, sub_cas=tuple(sub_ca),
                            crl_base_url=crl_url, organization=organization)
    console.print(f"[green]created[/] SM-PKI in {directory}")
    console.print(_tree(pki))


@app.command()
@handle_errors
def show(
    certificate: Path | None = typer.Argument(None, help="A certificate file to describe."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Show the PKI (CAs and everything issued) or describe one certificate."""
    if certificate is not None:
        for cert in load_certificates(read_file(certificate, "certificate")):
            console.print(_describe(cert))
        return
    pki = _open(pki_dir)
    console.print(_tree(pki))
    table = Table(title="Issued certificates")
    for column in ("serial", "profile", "identifier", "CA", "valid until", "status"):
        table.add_column(column)
    for rec in pki.records():
        status = "[green]valid[/]" if rec.status == "valid" else f"[red]revoked[/] ({rec.reason})"
        table.add_row(rec.serial_hex, rec.profile, rec.identifier, rec.ca, rec.not_after[:10],
                      status)
    console.print(table)


@app.command()
@handle_errors
def issue(
    profile: str = typer.Option(..., "--profile", "-p", help=PROFILE_HELP),
    identifier: str = typer.Option(..., "--id", help="Subject identifier (gateway id, …)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the certificate (PEM)."),
    csr: Path | None = typer.Option(None, help="PKCS#10 request (PEM or DER) to certify."),
    key_out: Path | None = typer.Option(
        None, help="Generate a key pair here instead of --csr (software participants only)."),
    ca: str | None = typer.Option(None, help="Issuing Sub-CA [default: the first]."),
    days: int | None = typer.Option(None, help="Validity in days [default: the profile's]."),
    dns: list[str] = typer.Option([], help="DNS subject alternative name (repeatable)."),
    ip: list[str] = typer.Option([], help="IP subject alternative name (repeatable)."),
    chain: bool = typer.Option(False, help="Append the Sub-CA and Root certificates."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Issue a certificate from a request (or for a freshly generated key)."""
    if (csr is None) == (key_out is None):
        raise UsageError("give exactly one of --csr or --key-out")
    pki = _open(pki_dir)
    kwargs = {"ca": ca, "validity": timedelta(days=days) if days else None,
              "dns_names": tuple(dns), "ip_addresses": tuple(ip)}
    if csr is not None:
        cert = pki.issue(profile, identifier, csr=read_file(csr, "request"), **kwargs)
    else:
        assert key_out is not None
        key, cert = pki.issue_with_new_key(profile, identifier, **kwargs)
        write_file(key_out, key.private_key_pem(), 0o600)
    body = pem(cert) + (b"".join(pem(c) for c in pki.chain(ca)) if chain else b"")
    write_file(out, body)
    console.print(f"[green]issued[/] {profile} for {identifier}: serial "
                  f"{cert.serial_number:x} → {out}")


@app.command()
@handle_errors
def request(
    identifier: str = typer.Option(..., "--id", help="Subject identifier."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the request (PEM)."),
    key: Path | None = typer.Option(None, help="Existing private key (PEM) to request for."),
    key_out: Path | None = typer.Option(None, help="Generate a new key pair and write it here."),
    curve: str = typer.Option(DEFAULT_CURVE, help="Curve of a generated key."),
    organization: str = typer.Option("imsys", "--org"),
) -> None:
    """Create a PKCS#10 certificate request (proof of possession signed by the key)."""
    if (key is None) == (key_out is None):
        raise UsageError("give exactly one of --key or --key-out")
    if key is not None:
        handle = SoftwareKey.from_pem(read_file(key, "key"))
    else:
        assert key_out is not None
        handle = SoftwareKey.generate(curve)
        write_file(key_out, handle.private_key_pem(), 0o600)
    write_file(out, pem(build_csr(handle, SubjectName(identifier, organization))))
    console.print(f"[green]request[/] for {identifier} → {out}")


@app.command()
@handle_errors
def renew(
    certificate: str = typer.Argument(..., help="Serial (hex) or file of the certificate."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the new certificate."),
    csr: Path | None = typer.Option(None, help="Request for a new key [default: same key]."),
    revoke_old: bool = typer.Option(False, help="Revoke the old certificate (superseded)."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Issue the successor of a certificate (same profile and subject)."""
    pki = _open(pki_dir)
    serial = _serial(pki, certificate)
    cert = pki.renew(serial, csr=read_file(csr, "request") if csr else None,
                     revoke_old=revoke_old)
    write_file(out, pem(cert))
    console.print(f"[green]renewed[/] {serial:x} → {cert.serial_number:x} ({out})")


@app.command()
@handle_errors
def revoke(
    certificate: str = typer.Argument(..., help="Serial (hex) or file of the certificate."),
    reason: str = typer.Option("unspecified", help="One of: " + ", ".join(REVOCATION_REASONS)),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Revoke a certificate and publish a new CRL of its CA at once."""
    pki = _open(pki_dir)
    rec = pki.revoke(_serial(pki, certificate), reason)
    console.print(f"[yellow]revoked[/] {rec.serial_hex} ({rec.profile} {rec.identifier}, "
                  f"{rec.reason}); CRL of {rec.ca} updated")


@app.command()
@handle_errors
def crl(
    ca: str | None = typer.Option(None, help="CA whose CRL to print [default: every CA]."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the CRL (PEM) here."),
    serve: bool = typer.Option(False, help="Serve the CRLs over HTTP until interrupted."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (loopback by default)."),
    port: int = typer.Option(8480, help="Port to serve on."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Sign fresh CRLs, write one to a file, or serve them over HTTP."""
    pki = _open(pki_dir)
    if serve:
        from imsys.pki.crl_server import CrlServer

        server = CrlServer(pki, host, port)
        console.print(f"serving CRLs of {', '.join(pki.ca_names)} at {server.url}/<ca>.crl "
                      "(Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    crls = {ca: pki.crl(ca)} if ca else pki.publish_crls()
    for name, item in crls.items():
        console.print(f"{name}: CRL #{_crl_number(item)}, {len(list(item))} revoked, next update "
                      f"{item.next_update_utc:%Y-%m-%d %H:%M}Z")
    if out is not None:
        if len(crls) != 1:
            raise UsageError("--out needs --ca")
        write_file(out, pem(next(iter(crls.values()))))


@app.command()
@handle_errors
def verify(
    certificate: Path = typer.Argument(..., help="Certificate (PEM bundle: leaf first)."),
    profile: list[str] = typer.Option([], "--profile", "-p",
                                      help="Expected profile (repeatable: any of them)."),
    at: str | None = typer.Option(None, help="Validation time (ISO 8601) [default: now]."),
    online: bool = typer.Option(False, help="Fetch CRLs from the distribution points."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Validate a certificate against the SM-PKI: path, signatures, validity, CRL, profile."""
    pki = _open(pki_dir)
    certs = load_certificates(read_file(certificate, "certificate"))
    when = datetime.fromisoformat(at).astimezone(UTC) if at else None
    if online:
        validator = PathValidator([pki.root.certificate],
                                  [pki.ca(n).certificate for n in pki.settings["sub_cas"]],
                                  HttpCrlSource())
    else:
        validator = pki.validator()
    path = validator.validate(certs[0], chain=certs[1:], profile=profile or None, at=when)
    name = path.profile.name if path.profile else "no imsys profile"
    console.print(f"[green]valid[/]: {path.identifier} ({name})")
    for depth, cert in enumerate(path.certificates):
        console.print(f"  {depth}: {cert.subject.rfc4514_string()}")


@app.command("chain")
@handle_errors
def chain_cmd(
    ca: str | None = typer.Option(None, help="Sub-CA [default: the first]."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    root_only: bool = typer.Option(False, "--root", help="Only the Root-CA certificate."),
    pki_dir: Path | None = PkiOption,
) -> None:
    """Print the CA certificates (PEM) – the trust anchor for peers such as openssl."""
    pki = _open(pki_dir)
    certs = [pki.root.certificate] if root_only else pki.chain(ca)
    body = b"".join(pem(c) for c in certs)
    if out is None:
        typer.echo(body.decode(), nl=False)
    else:
        write_file(out, body)


# ----------------------------------------------------------------------------- rendering


def _crl_number(item: x509.CertificateRevocationList) -> int:
    return item.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _tree(pki: PkiDirectory) -> Tree:
    root = pki.root.certificate
    tree = Tree(f"[bold]{common_name(root)}[/] (Root-CA, {root.public_key().curve.name}, "  # type: ignore[union-attr]
                f"until {root.not_valid_after_utc:%Y-%m-%d})")
    records = pki.records()
    for name in pki.ca_names[1:]:
        sub = pki.ca(name).certificate
        issued = [r for r in records if r.ca == name]
        revoked = sum(r.status == "revoked" for r in issued)
        tree.add(f"[bold]{common_name(sub)}[/] (Sub-CA '{name}', {len(issued)} issued, "
                 f"{revoked} revoked, CRL {crl_urls(sub) and pki.ca(name).crl_url})")
    return tree


def _describe(cert: x509.Certificate) -> Table:
    table = Table(show_header=False, title=common_name(cert))
    found = certificate_profile(cert)
    key = cert.public_key()
    rows = [
        ("subject", cert.subject.rfc4514_string()),
        ("issuer", cert.issuer.rfc4514_string()),
        ("serial", f"{cert.serial_number:x}"),
        ("profile", f"{found.name} ({found.seed_name or 'no seed name'})" if found else "none"),
        ("key", f"EC {getattr(getattr(key, 'curve', None), 'name', type(key).__name__)}"),
        ("key usage", ", ".join(sorted(u.value for u in key_usages(cert)))),
        ("valid", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} – "
                  f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"),
        ("CRL", ", ".join(crl_urls(cert)) or "–"),
        ("SHA-256", cert.fingerprint(hashes.SHA256()).hex(":")),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table

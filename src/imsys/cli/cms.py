"""``imsys cms …`` – craft and open payloads as the gateway and the EMT do, on PEM files.

Mirrors ``openssl cms``: ``seal`` = sign with the sender's key, then encrypt for the
recipient (AuthEnvelopedData, AES-GCM, ECKA with the X9.63 SHA-256 KDF); ``open`` = the
reverse, accepting both nestings met in practice (inner id-signedData, or id-data carrying a
SignedData ContentInfo as ``openssl cms -sign | openssl cms -encrypt`` makes).
"""

from __future__ import annotations

import base64
from pathlib import Path

import typer

from imsys.cli._common import console, err_console, handle_errors, read_file, write_file
from imsys.core.clock import SystemClock
from imsys.crypto import cms
from imsys.crypto.primitives import SoftwareKey
from imsys.pki import PkiDirectory, load_certificate

app = typer.Typer(help="CMS (RFC 5652/5083) payloads of the TR-03109 profile, on PEM files.",
                  no_args_is_help=True)


@app.command()
@handle_errors
def seal(
    input_file: Path = typer.Argument(..., metavar="IN", help="Content to protect."),
    output_file: Path = typer.Argument(..., metavar="OUT", help="Where to write the DER CMS."),
    key: Path = typer.Option(..., help="Sender's signature private key (PEM)."),
    cert: Path = typer.Option(..., help="Sender's signature certificate (PEM)."),
    recipient: list[Path] = typer.Option(
        ..., help="Recipient's encryption certificate (PEM); repeat for several recipients."),
    aes256: bool = typer.Option(False, help="AES-256 instead of AES-128."),
) -> None:
    """Sign IN with the sender's key and encrypt it for the recipient certificate(s).

    The result is an AuthEnvelopedData (AES-GCM) whose content is the SignedData.
    """
    content = read_file(input_file, "input")
    signer = SoftwareKey.from_pem(read_file(key, "key"))
    signer_cert = load_certificate(read_file(cert, "certificate"))
    recipients = [load_certificate(read_file(r, "recipient certificate")) for r in recipient]
    sealed = cms.seal(content, signer, signer_cert, recipients,
                      signing_time=SystemClock().now(), key_bits=256 if aes256 else 128)
    write_file(output_file, sealed)
    console.print(f"[green]sealed[/] {len(content)} bytes for {len(recipients)} recipient(s) "
                  f"→ {output_file} ({len(sealed)} bytes)")


@app.command("open")
@handle_errors
def open_(
    input_file: Path = typer.Argument(..., metavar="IN", help="CMS message (DER or PEM)."),
    output_file: Path = typer.Argument(..., metavar="OUT", help="Where to write the content."),
    key: Path = typer.Option(..., help="Recipient's encryption private key (PEM)."),
    cert: Path = typer.Option(..., help="Recipient's encryption certificate (PEM)."),
    signer: Path | None = typer.Option(
        None, help="Expected signer certificate (PEM) [default: the one in the message]."),
    pki: Path | None = typer.Option(
        None, help="Also validate the signer's certificate path against this PKI directory."),
) -> None:
    """Decrypt IN with the recipient's key, verify the inner signature, write the content."""
    data = _der(read_file(input_file, "input"))
    handle = SoftwareKey.from_pem(read_file(key, "key"))
    own = load_certificate(read_file(cert, "certificate"))
    expected = load_certificate(read_file(signer, "signer certificate")) if signer else None
    opened = cms.open_sealed(data, handle, own, signer_certificate=expected)
    if pki is not None:
        path = PkiDirectory.open(pki).validator().validate(opened.signer_certificate)
        err_console.print(f"signer path valid: {path.identifier}")
    write_file(output_file, opened.content)
    console.print(f"[green]opened[/] {len(opened.content)} bytes signed by "
                  f"{opened.signer_certificate.subject.rfc4514_string()} → {output_file}")


def _der(data: bytes) -> bytes:
    """Accept PEM (``-----BEGIN CMS-----`` / PKCS7) as well as DER."""
    stripped = data.lstrip()
    if not stripped.startswith(b"-----BEGIN"):
        return data
    lines = [line for line in stripped.splitlines() if line and not line.startswith(b"-----")]
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except ValueError:
        return data  # let the CMS parser reject it with its reason

"""Finding a PKCS#11 library and making SoftHSM2 tokens for tests and CI.

No python-pkcs11 import at module level: callers can ask "is SoftHSM2 here?" without it.

SoftHSM2 reads ``SOFTHSM2_CONF`` and scans its token directory when the library is initialised
(``C_Initialize``); python-pkcs11 loads a library once per process. So: make every token
*before* the first :class:`~imsys.secmod.pkcs11.Pkcs11SecurityModule` of the process (tests:
one session-scoped token, emptied between tests), or pass ``reinitialize=True``, which
finalises and reinitialises the library and thereby ends every open session of the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from imsys.core.errors import UsageError

#: Environment variable naming the PKCS#11 library to use (any vendor's).
LIBRARY_ENV = "IMSYS_PKCS11_LIB"
#: Where distributions install SoftHSM2.
SOFTHSM_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


class SoftHsmToken(NamedTuple):
    """What :class:`~imsys.secmod.pkcs11.Pkcs11SecurityModule` needs to open a token."""

    library: str
    token_label: str
    user_pin: str


def find_pkcs11_library() -> str | None:
    """The PKCS#11 library: ``$IMSYS_PKCS11_LIB`` if set, else SoftHSM2 where installed.

    ``None`` if nothing is installed; ``UsageError`` if the variable names a missing file.
    """
    configured = os.environ.get(LIBRARY_ENV)
    if configured:
        if not Path(configured).is_file():
            raise UsageError(f"{LIBRARY_ENV}={configured} does not exist")
        return configured
    for candidate in SOFTHSM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


def _loaded(library: str) -> bool:
    module = sys.modules.get("pkcs11")
    # python-pkcs11 keeps its loaded libraries in ``pkcs11._loaded`` (by path).
    return module is not None and library in getattr(module, "_loaded", {})


def softhsm_token(directory: Path | str, label: str = "imsys", *, user_pin: str = "imsys-user-1",
                  so_pin: str = "imsys-so-12345", library: str | None = None,
                  reinitialize: bool = False) -> SoftHsmToken:
    """Create a SoftHSM2 configuration in ``directory`` and initialise a token ``label`` there.

    Sets ``os.environ["SOFTHSM2_CONF"]`` to ``directory/softhsm2.conf`` (token directory
    ``directory/tokens``). Call it before the library is first loaded in this process;
    afterwards a new token is invisible unless ``reinitialize=True`` (see module docs).
    """
    directory = Path(directory)
    library = library or find_pkcs11_library()
    if library is None:
        raise UsageError("SoftHSM2 is not installed (no libsofthsm2.so; set IMSYS_PKCS11_LIB)")
    util = shutil.which("softhsm2-util")
    if util is None:
        raise UsageError("softhsm2-util is not on PATH")
    conf = directory / "softhsm2.conf"
    current = os.environ.get("SOFTHSM2_CONF")
    loaded = _loaded(library)
    if loaded and current and Path(current) != conf:
        raise UsageError(f"SoftHSM2 is already loaded with SOFTHSM2_CONF={current}")
    if loaded and not reinitialize:
        raise UsageError("SoftHSM2 is already loaded in this process; a new token would stay "
                         "invisible (make tokens first, or pass reinitialize=True)")
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not conf.exists():
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                        "log.level = ERROR\nslots.removable = false\n", encoding="utf-8")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--so-pin", so_pin,
         "--pin", user_pin],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)}, capture_output=True, text=True,
        check=False, timeout=60,
    )
    if result.returncode != 0:
        raise UsageError(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
    if loaded:
        import pkcs11

        pkcs11.lib(library).reinitialize()
    return SoftHsmToken(library, label, user_pin)

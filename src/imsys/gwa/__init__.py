"""The gateway administrator (GWA, "SMGW-Admin") role – docs/gwa.md.

* :mod:`imsys.gwa.initial_config` – the signed initial configuration file and the answer to
  the security module's administrator challenge (seed 003 §2.3.1.3, §2.3.3);
* :mod:`imsys.gwa.keys` – GWADM_{TLS,SIG,ENC,AUT} in the GWA's security module, the Sub-CA port;
* :mod:`imsys.gwa.db` – inventory, command queue and history (SQLite / PostgreSQL);
* :mod:`imsys.gwa.service` – admin sessions and the commissioning driver;
* :mod:`imsys.gwa.server` – the admin-session TLS endpoint (``imsys-admin-session/1``);
* :mod:`imsys.gwa.api` / :mod:`imsys.gwa.cli` – operator API (FastAPI) and ``imsys gwa``;
* :mod:`imsys.gwa.wakeup` – the signed UDP wake-up.

Only the initial-configuration helpers are imported here; the rest on use.
"""

from __future__ import annotations

from imsys.gwa.initial_config import (
    GwaCredentials,
    answer_admin_challenge,
    build_initial_configuration,
    sign_initial_configuration,
)

__all__ = [
    "GwaCredentials",
    "answer_admin_challenge",
    "build_initial_configuration",
    "sign_initial_configuration",
]

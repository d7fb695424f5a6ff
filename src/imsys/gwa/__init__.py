"""The gateway administrator (GWA, "SMGW-Admin") role.

So far only what commissioning needs (seed 003 §2.3.1.3, §2.3.3):
:mod:`imsys.gwa.initial_config` builds and signs the initial configuration file and answers
the security module's administrator challenge.
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

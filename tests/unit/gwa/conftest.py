"""Fixtures of the GWA tests: the database URL for both backends (``db_url``: SQLite, and
PostgreSQL from ``IMSYS_POSTGRES_URL`` or a throwaway ``initdb`` cluster – the pattern of the
EMT storage tests; skipped without either unless ``IMSYS_REQUIRE_POSTGRES=1``). They live in
gwa_helpers so the integration tests can use them too."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))

from gwa_helpers import db_url

__all__ = ["db_url"]

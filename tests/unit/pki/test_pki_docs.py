"""docs/protocols.md stays true: its certificate-profile table is the code's table."""

from __future__ import annotations

from pathlib import Path

from imsys.pki.profiles import IMSYS_ARC, POLICY_ARC, PROFILES

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocols.md"


def test_profile_table_matches_the_code() -> None:
    text = DOC.read_text()
    assert f"`{IMSYS_ARC}`" in text
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines()
            if line.startswith("| `") and line.count("|") == 9}
    assert set(rows) == set(PROFILES)
    for name, p in PROFILES.items():
        row = rows[name]
        assert f"`arc{p.policy_oid[len(IMSYS_ARC):]}`" in row
        assert (p.seed_name or "–") in row
        for usage in p.key_usage:
            assert usage.value in row
        assert p.policy_oid.startswith(POLICY_ARC)

"""Database URLs for the SQLAlchemy-backed roles (EMT, GWA): one spelling for both."""

from __future__ import annotations

from sqlalchemy.engine import make_url

__all__ = ["normalise_url"]


def normalise_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://``; a bare path → ``sqlite:///path``."""
    if "://" not in url:
        return f"sqlite:///{url}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url

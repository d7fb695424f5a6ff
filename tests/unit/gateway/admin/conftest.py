"""Fixtures of the administration-handler tests (defined in admin_handler_helpers)."""

from admin_handler_helpers import gateway

__all__ = ["gateway"]

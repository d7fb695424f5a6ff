"""TR-03109-3 / TR-03116-3 cryptography: recipes on top, primitives in ``imsys.crypto.primitives``."""

from imsys.crypto.primitives import CURVES, DEFAULT_CURVE, KeyHandle, SoftwareKey

__all__ = ["CURVES", "DEFAULT_CURVE", "KeyHandle", "SoftwareKey"]

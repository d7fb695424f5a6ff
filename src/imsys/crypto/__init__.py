"""TR-03109-3 / TR-03116-3 cryptography.

Recipes: :mod:`imsys.crypto.cms` (seal for the final recipient, open and verify) and
:mod:`imsys.crypto.tls` (TR-03116-3 contexts). Raw building blocks, for code that knows what it
is doing: :mod:`imsys.crypto.primitives`.
"""

from imsys.crypto import cms
from imsys.crypto.primitives import CURVES, DEFAULT_CURVE, KeyHandle, SoftwareKey

__all__ = ["CURVES", "DEFAULT_CURVE", "KeyHandle", "SoftwareKey", "cms"]

"""The local metrological network (LMN, TR-03109-1): meter-side protocols, sans-io.

* :mod:`imsys.lmn.sml` – SML 1.04 over the wired LMN (TR-03109-1 Anlage IV Teil b);
* :mod:`imsys.lmn.wmbus` – wireless M-Bus with OMS security (EN 13757-3/-4/-7, OMS Vol. 2);
* :mod:`imsys.lmn.errors` – :class:`FrameRejected` and its reasons.

Design note and conformance table: ``docs/lmn.md``.
"""

from imsys.lmn.errors import FrameRejected, LmnReason, SmlRejected, WmbusRejected

__all__ = ["FrameRejected", "LmnReason", "SmlRejected", "WmbusRejected"]

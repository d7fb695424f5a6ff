"""A small business: BDEW standard load profile G0 (1999) or G25 (2025), see :mod:`.slp`.

G0/G25 are static profiles (no dynamisation). Business load is smoother than a single
household (more appliances, more regular hours), so the default noise is lower, the phases are
better balanced and the power factor is a little lower (motors, lighting ballasts).
"""

from __future__ import annotations

from imsys.core.errors import UsageError
from imsys.meters.slp import SlpProfile, StandardLoadProfile

BUSINESS_PROFILES = frozenset(
    {
        SlpProfile.G0,
        SlpProfile.G1,
        SlpProfile.G2,
        SlpProfile.G3,
        SlpProfile.G4,
        SlpProfile.G5,
        SlpProfile.G6,
        SlpProfile.G25,
    }
)


def business(
    annual_kwh: float = 20000.0,
    profile: SlpProfile = SlpProfile.G25,
    *,
    noise: float = 0.15,
    phase_imbalance: float = 0.15,
    power_factor: float = 0.92,
    normalise: bool = True,
) -> StandardLoadProfile:
    """A small business (shop, office, workshop) on G25 (default) or G0…G6."""
    if profile not in BUSINESS_PROFILES:
        raise UsageError(f"{profile} is not a business profile")
    return StandardLoadProfile(
        profile=profile,
        annual_kwh=annual_kwh,
        noise=noise,
        phase_imbalance=phase_imbalance,
        power_factor=power_factor,
        normalise=normalise,
    )

"""The GWA's wake-up sender (seed 003 table 3 step 3.1): one signed ``imsys-wakeup/1``
datagram (:func:`imsys.wire.wakeup.make_wakeup`, GWADM_SIG, 2 minutes, fresh nonce) to the
gateway's wake-up address from the inventory. The gateway answers by connecting out to its
configured GWA – never to the sender of the datagram."""

from __future__ import annotations

import socket

from imsys.core.errors import UsageError
from imsys.gwa.service import GwaService

__all__ = ["send_wakeup"]


def send_wakeup(service: GwaService, gateway_id: str) -> tuple[str, int]:
    """Send the wake-up; returns the address it went to. ``UsageError`` if the gateway has
    no wake-up address in the inventory."""
    gateway = service.db.gateway(gateway_id)
    if gateway is None or gateway.wakeup_host is None or gateway.wakeup_port is None:
        raise UsageError(f"no wake-up address for {gateway_id}")
    address = (gateway.wakeup_host, gateway.wakeup_port)
    packet = service.wakeup_packet(gateway_id)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(packet, address)
    return address

"""Acknowledge at once, at the TCP level, a frame the server does not answer at once.

A peer that keeps Nagle's algorithm on (the official client does) holds a small frame back
while an earlier frame of its own is unacknowledged. Linux delays the ACK of a small segment
(40 ms or more) on a connection it has seen go back and forth, expecting to carry the ACK on
the server's next frame. When that next frame does not come at once, the two delays meet: a
peer answering two ``tools.execute`` requests back to back sends the first answer, and its
second waits for an ACK that the server's kernel holds until its timer fires, because the
server has nothing to send until both answers are in. A frame answered at once needs nothing:
its reply carries the ACK.

:func:`ack_now` sets ``TCP_QUICKACK`` on the connection's socket, which sends the pending ACK
now (Linux clears the option again by itself, so it is set for each such frame). Elsewhere than
Linux the option does not exist and nothing is done.
"""

from __future__ import annotations

import contextlib
import socket

from websockets.asyncio.server import ServerConnection

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def ack_now(ws: ServerConnection) -> None:
    """Send the TCP ACK of what ``ws`` has read so far without waiting for a reply to carry it."""
    if _TCP_QUICKACK is None:
        return
    sock = ws.transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):  # not TCP, or already closed: no ACK to hurry
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

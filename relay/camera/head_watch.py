"""Watching an upload's first bytes for the envelope head, so a bad head is refused as soon as
it has arrived, long before the body has been sent.

Only the head is buffered, and never more than the format's largest head (MAX_HEAD_LENGTH);
the full check is the routing view's own parser (relay/keys/routing_view.py).
"""

from __future__ import annotations

from relay.keys.routing_view import (
    COUNT,
    FIXED_HEADER,
    ID_LENGTH,
    MAC_LENGTH,
    MAGIC,
    MAX_HEAD_LENGTH,
    STANZA_PREFIX_LENGTH,
    STANZA_SUFFIX_LENGTH,
    VERSION,
    MalformedEnvelope,
    RoutingView,
    UnsupportedEnvelopeVersion,
    read_routing_view,
)


def head_length_needed(prefix: bytes | bytearray) -> int | None:
    """The length of the head ``prefix`` begins, or None while more bytes are needed to tell.

    Refuses at once what no head can start with: a wrong magic or version, or a head that
    would be longer than the format allows."""
    seen = min(len(prefix), len(MAGIC))
    if bytes(prefix[:seen]) != MAGIC[:seen]:
        raise MalformedEnvelope("not a well-formed sealed envelope: bad magic")
    if len(prefix) > len(MAGIC) and prefix[len(MAGIC)] != VERSION:
        raise UnsupportedEnvelopeVersion(f"envelope version {prefix[len(MAGIC)]} is not supported")
    position = FIXED_HEADER.size + COUNT.size
    if len(prefix) < position:
        return None
    (count,) = COUNT.unpack_from(prefix, FIXED_HEADER.size)
    for _ in range(count):
        if len(prefix) < position + STANZA_PREFIX_LENGTH:
            return None
        position += STANZA_PREFIX_LENGTH + prefix[position + ID_LENGTH] + STANZA_SUFFIX_LENGTH
        if position > MAX_HEAD_LENGTH:
            raise MalformedEnvelope("not a well-formed sealed envelope: its head is too long")
    return position + MAC_LENGTH


class HeadWatch:
    """Fed an upload's bytes in order from offset 0; ``view`` is set once the whole head has
    arrived and parsed (MalformedEnvelope or UnsupportedEnvelopeVersion otherwise)."""

    def __init__(self, prefix: bytes = b"") -> None:
        self._buffer = bytearray()
        self.view: RoutingView | None = None
        self.feed(prefix)

    def feed(self, chunk: bytes | bytearray | memoryview) -> RoutingView | None:
        if self.view is None:
            self._buffer += chunk[: MAX_HEAD_LENGTH - len(self._buffer)]
            needed = head_length_needed(self._buffer)
            if needed is not None and len(self._buffer) >= needed:
                self.view = read_routing_view(bytes(self._buffer[:needed]))
                self._buffer = bytearray()
        return self.view

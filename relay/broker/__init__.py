"""The broker seam: events between parts of Relay, in-process or across nodes through Redis."""

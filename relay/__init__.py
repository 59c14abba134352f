"""Relay: an end-to-end encrypted messaging hub for clinical teams with a pass-through camera relay."""

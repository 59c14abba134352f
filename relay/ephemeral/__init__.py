"""Short-lived shared state: rate-limit counters and one-time claims, with expiry."""

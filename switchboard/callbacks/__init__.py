"""Status callbacks: signing, the egress guard, the transport and the dispatcher (ARCHITECTURE.md §2)."""

RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
"""Seconds before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (ten attempts in all).
Here rather than in the dispatcher so that the configuration can name it without loading the HTTP client."""

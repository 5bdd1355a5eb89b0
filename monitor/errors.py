"""The monitor's own exceptions (the hub maps them onto user-facing errors)."""


class MonitorError(Exception):
    """Base of the monitor's own exceptions."""

"""The registry's own exceptions (the hub maps them onto user-facing errors)."""


class RegistryError(Exception):
    """Base of the registry's own exceptions."""

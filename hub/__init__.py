"""The hub: use cases over the registry, the runners and the monitor."""

"""Monitoring: prediction log, per-minute rollups, feedback, scorecards and Prometheus metrics.

Layering: this package imports nothing from hub, registry, runners, web or cli, and never reads
the environment; it takes plain values. Its tables bind to the hub's one database
(`database.connection.database`); `monitor.migrations` registers their schema steps.
"""

"""Monitoring: prediction log, per-minute rollups, feedback, scorecards and Prometheus metrics.

Layering: this package imports nothing from hub, registry, runners, web or cli, and never reads
the environment; it takes plain values. Its tables live behind `monitor.tables.database`, a peewee
DatabaseProxy the hub initializes with its one database before calling `monitor.migrations.migrate`.
"""

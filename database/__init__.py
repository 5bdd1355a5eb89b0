"""The hub's one database: a peewee proxy every table binds to, opened from a URL, and one migration
runner with which the registry and the monitor register their schema steps."""

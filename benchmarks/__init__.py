"""Measured targets, run by `make bench` and printed as one table."""

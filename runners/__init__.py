"""Runners turn a version spec into a running BentoML server: process and container backends."""

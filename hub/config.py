"""The one place configuration is read: defaults < AIDHUB_* environment < explicit overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

RUNNERS = ("auto", "process", "container")


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    runner: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    wheelhouse: Path | None = None
    envs: Path | None = None
    uv_cache: Path | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    log_payload_bytes: int = 16 * 1024
    log_flush_seconds: float = 0.5
    ready_timeout_seconds: float = 120.0
    docker_host: str | None = None
    base_image: str = "aidhub/base:py3.11"  # built locally by scripts/base-image.sh

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def packages_dir(self) -> Path:
        return self.home / "packages"

    @property
    def envs_dir(self) -> Path:
        return self.envs or self.home / "envs"

    @property
    def uv_cache_dir(self) -> Path:
        return self.uv_cache or self.home / "uv-cache"

    @property
    def deployments_dir(self) -> Path:
        return self.home / "deployments"

    @property
    def wheelhouse_dir(self) -> Path:
        return self.wheelhouse or self.home / "wheelhouse"

    @classmethod
    def load(cls, env: dict | None = None, **overrides) -> Config:
        """Build the config from `env` (default: os.environ) and explicit overrides."""
        env = os.environ if env is None else env
        home = Path(overrides.pop("home", None) or env.get("AIDHUB_HOME") or "~/.aidhub")
        home = home.expanduser().resolve()
        values = {
            "database_url": env.get("AIDHUB_DATABASE_URL") or f"sqlite:///{home}/hub.db",
            "runner": env.get("AIDHUB_RUNNER", "auto"),
            "docker_host": env.get("DOCKER_HOST"),
            "base_image": env.get("AIDHUB_BASE_IMAGE", cls.base_image),
        }
        for key, name in [
            ("wheelhouse", "AIDHUB_WHEELHOUSE"),
            ("envs", "AIDHUB_ENVS"),
            ("uv_cache", "AIDHUB_UV_CACHE"),
        ]:
            if env.get(name):  # caches that several hubs on one machine may share
                values[key] = Path(env[name]).expanduser().resolve()
        config = cls(home=home, **values)
        config = replace(config, **overrides)
        if config.runner not in RUNNERS:
            raise ValueError(
                f"AIDHUB_RUNNER={config.runner!r} is not a runner; use one of {', '.join(RUNNERS)}."
            )
        return config

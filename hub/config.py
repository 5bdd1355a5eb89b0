"""The one place configuration is read: defaults < AIDHUB_* environment < explicit overrides.
A bad value raises SettingInvalid naming the variable and a valid value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub.errors import SettingInvalid
from runners.buildcontext import BuildContextError, check_base_image, check_base_image_overrides
from vocab.images import HUB_BASE_IMAGE_KEYS
from vocab.sizes import format_size, parse_size
from vocab.times import parse_duration

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
    max_file_bytes: int = 32 * 1024**3  # AIDHUB_MAX_FILE_SIZE: one file of a package
    max_version_bytes: int = 64 * 1024**3  # AIDHUB_MAX_VERSION_SIZE: all files of one version
    max_files: int = 10_000  # AIDHUB_MAX_FILES: files in one version
    min_free_disk_bytes: int = 1024**3  # AIDHUB_MIN_FREE_DISK: what an upload must leave free
    rate_predict: tuple = (500.0, 500)  # AIDHUB_RATE_PREDICT: calls a second per client, burst ("0": none)
    rate_feedback: tuple = (20.0, 20)  # AIDHUB_RATE_FEEDBACK: likewise for feedback
    card_images: bool = False  # AIDHUB_CARD_IMAGES=external: model cards may show images from other sites
    anonymous_scopes: tuple = (
        "read",
        "predict",
        "feedback",
    )  # AIDHUB_ANONYMOUS: what callers without a token may do
    upload_ttl_seconds: float = 24 * 3600.0  # AIDHUB_UPLOAD_TTL: uncommitted blobs and parts are kept so long
    max_request_body_bytes: int = 64 * 1024**2  # AIDHUB_MAX_REQUEST_BODY: predict, v2 infer, file lists
    max_json_body_bytes: int = 1024**2  # AIDHUB_MAX_JSON_BODY: the body of any other request
    max_compression_ratio: float = 200.0  # AIDHUB_MAX_COMPRESSION_RATIO: a .tar.gz unpacks per byte sent
    max_image_pixels: int = 25_000_000  # AIDHUB_MAX_IMAGE_PIXELS: a PNG/JPEG predict body, decoded
    log_payload_bytes: int = 16 * 1024
    log_flush_seconds: float = 0.5
    ready_timeout_seconds: float = 120.0
    docker_host: str | None = None
    queue_url: str = ""  # "" is the embedded SQLite queue in home; redis://... for `aid worker`s
    build_workers: int = 2  # build threads inside the hub; 0 when only `aid worker`s build
    watch_seconds: float = 2.0  # how often the watcher checks that deployed servers run; 0: never
    base_image: str = "aidhub/base:py3.11"  # the CPU base; built locally by scripts/base-image.sh
    base_images: dict = field(default_factory=dict)  # AIDHUB_BASE_IMAGES: gpu, torch-gpu, onnx-cpu, ...
    max_memory_bytes: int | None = None  # AIDHUB_MAX_MEMORY: versions asking more are refused
    max_cpus: float | None = None  # AIDHUB_MAX_CPUS: likewise
    drift_reference_rows: int = 500  # AIDHUB_DRIFT_REFERENCE_ROWS: the first N calls, without reference data
    drift_max_rows: int = 10_000  # a drift run compares at most the newest N calls of its window
    drift_min_rows: int = 30  # and needs at least N
    drift_every_seconds: float = 3600.0  # AIDHUB_DRIFT_EVERY: a drift run per serving version ("0": none)
    drift_after_calls: int = 1000  # AIDHUB_DRIFT_AFTER_CALLS: and after this many new calls
    retention_days: int = 30  # AIDHUB_RETENTION_DAYS: logged calls older than this are deleted (0: never)
    alert_every_seconds: float = 30.0  # AIDHUB_ALERT_EVERY: how often alert rules are evaluated ("0": never)
    review_every_seconds: float = 30.0  # AIDHUB_REVIEW_EVERY: the review queue's selection pass ("0": never)
    review_settle_seconds: float = 20.0  # AIDHUB_REVIEW_SETTLE: a call's age before it is judged
    webhook_secret: str = ""  # AIDHUB_WEBHOOK_SECRET: signs webhooks of rules without a secret of their own
    public_url: str = ""  # AIDHUB_PUBLIC_URL: the hub's URL in webhook links (default http://host:port)
    webhook_attempts: int = 5  # tries per alert webhook delivery
    webhook_backoff_seconds: float = 1.0  # before the 2nd try; doubled before each next one
    webhook_timeout_seconds: float = 5.0  # for an answer to one try
    metrics_dir: str = (
        ""  # PROMETHEUS_MULTIPROC_DIR (prometheus_client's own): `aid serve --workers N` sets it
    )

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
            "queue_url": env.get("AIDHUB_QUEUE_URL", ""),
            "build_workers": _number(env, "AIDHUB_BUILD_WORKERS", cls.build_workers, int),
            "watch_seconds": _number(env, "AIDHUB_WATCH_SECONDS", cls.watch_seconds, float),
            "base_image": _base_image(env.get("AIDHUB_BASE_IMAGE") or cls.base_image),
            "base_images": _base_images(env.get("AIDHUB_BASE_IMAGES", "")),
            "max_memory_bytes": _max_memory(env.get("AIDHUB_MAX_MEMORY", "")),
            "max_cpus": _max_cpus(env.get("AIDHUB_MAX_CPUS", "")),
            "drift_every_seconds": _drift_every(env.get("AIDHUB_DRIFT_EVERY", "1h")),
            "drift_after_calls": _number(env, "AIDHUB_DRIFT_AFTER_CALLS", cls.drift_after_calls, int),
            "retention_days": _number(env, "AIDHUB_RETENTION_DAYS", cls.retention_days, int),
            **_loop_settings(env),
            "webhook_secret": env.get("AIDHUB_WEBHOOK_SECRET", ""),
            "public_url": env.get("AIDHUB_PUBLIC_URL", "").rstrip("/"),
            "metrics_dir": env.get("PROMETHEUS_MULTIPROC_DIR", ""),
            **_upload_settings(env),
            **_body_settings(env),
            "anonymous_scopes": _anonymous(env),
            "card_images": _card_images(env.get("AIDHUB_CARD_IMAGES", "")),
            "rate_predict": _rate(env, "AIDHUB_RATE_PREDICT", cls.rate_predict),
            "rate_feedback": _rate(env, "AIDHUB_RATE_FEEDBACK", cls.rate_feedback),
            "drift_reference_rows": _number(
                env, "AIDHUB_DRIFT_REFERENCE_ROWS", cls.drift_reference_rows, int
            ),
        }
        config = cls(home=home, **values, **_shared_caches(env))
        config = replace(config, **overrides)
        if config.runner not in RUNNERS:
            raise SettingInvalid(
                f"AIDHUB_RUNNER={config.runner!r} is not a runner; use one of {', '.join(RUNNERS)}."
            )
        return config


def _number(env, name: str, default, kind):
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if number < 0:
        raise SettingInvalid(f"{name}={value!r} is not a valid setting; use a number >= 0 such as {default}.")
    return number


def _shared_caches(env) -> dict:
    """Caches that several hubs on one machine may share."""
    names = {"wheelhouse": "AIDHUB_WHEELHOUSE", "envs": "AIDHUB_ENVS", "uv_cache": "AIDHUB_UV_CACHE"}
    return {key: Path(env[name]).expanduser().resolve() for key, name in names.items() if env.get(name)}


RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _rate(env, name: str, default: tuple) -> tuple:
    """'500/s', '60/m', '1000/h' -> (calls a second, burst: the count given); '0': no limit."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if text == "0":
        return (0.0, 0)
    count, _, unit = text.partition("/")
    if not count.isdigit() or int(count) == 0 or unit not in RATE_UNITS:
        raise SettingInvalid(f"{name}={text!r} is not a rate; use e.g. 500/s, 60/m or 0 (no limit).")
    return (int(count) / RATE_UNITS[unit], int(count))


def _card_images(text: str) -> bool:
    if text.strip() not in ("", "self", "external"):
        raise SettingInvalid(f"AIDHUB_CARD_IMAGES={text!r}: use self (images of the hub only) or external.")
    return text.strip() == "external"


def _anonymous(env) -> tuple:
    """AIDHUB_ANONYMOUS: 'read,predict,feedback' (the default), '' for none; never admin."""
    text = env.get("AIDHUB_ANONYMOUS")
    if text is None:
        return Config.anonymous_scopes
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    allowed = ("read", "predict", "feedback", "publish", "deploy")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SettingInvalid(
            f"AIDHUB_ANONYMOUS={text!r} names {', '.join(unknown)}; use some of {', '.join(allowed)} "
            "(comma-separated), or nothing for no anonymous access."
        )
    return names


def _upload_settings(env) -> dict:
    return {
        "max_file_bytes": _size(env, "AIDHUB_MAX_FILE_SIZE", Config.max_file_bytes),
        "max_version_bytes": _size(env, "AIDHUB_MAX_VERSION_SIZE", Config.max_version_bytes),
        "max_files": _number(env, "AIDHUB_MAX_FILES", Config.max_files, int),
        "min_free_disk_bytes": _size(env, "AIDHUB_MIN_FREE_DISK", Config.min_free_disk_bytes),
        "upload_ttl_seconds": _duration(env, "AIDHUB_UPLOAD_TTL", Config.upload_ttl_seconds),
    }


def _body_settings(env) -> dict:
    """Caps on request bodies (web/bodylimits.py) and on how far an archive may unpack."""
    ratio = env.get("AIDHUB_MAX_COMPRESSION_RATIO", "").strip()
    try:
        max_ratio = float(ratio) if ratio else Config.max_compression_ratio
    except ValueError:
        max_ratio = -1.0
    if not (max_ratio == 0 or 1 <= max_ratio < float("inf")):
        raise SettingInvalid(
            f"AIDHUB_MAX_COMPRESSION_RATIO={ratio!r} is not a ratio; use a number >= 1 such as 200 "
            "(bytes unpacked per byte sent), or 0 for no limit."
        )
    return {
        "max_request_body_bytes": _size(env, "AIDHUB_MAX_REQUEST_BODY", Config.max_request_body_bytes),
        "max_json_body_bytes": _size(env, "AIDHUB_MAX_JSON_BODY", Config.max_json_body_bytes),
        "max_compression_ratio": max_ratio,
        "max_image_pixels": _number(env, "AIDHUB_MAX_IMAGE_PIXELS", Config.max_image_pixels, int),
    }


def _size(env, name: str, default: int) -> int:
    value = env.get(name, "")
    if not value.strip():
        return default
    try:
        return parse_size(value)
    except ValueError as e:
        hint = f"use e.g. {format_size(default)}, 500Mi or 2G"
        raise SettingInvalid(f"{name}={value!r} is not a size; {hint}.") from e


def _duration(env, name: str, default: float) -> float:
    value = env.get(name, "")
    if not value.strip():
        return default
    try:
        return parse_duration(value).total_seconds()
    except ValueError as e:
        raise SettingInvalid(f"{name}={value!r} is not a duration; use e.g. 24h, 30m or 7d.") from e


def _base_image(image: str) -> str:
    try:
        return check_base_image(image)
    except BuildContextError as e:
        raise SettingInvalid(f"AIDHUB_BASE_IMAGE: {e}") from e


def _base_images(text: str) -> dict[str, str]:
    """'torch-gpu=my/cuda-torch:1,gpu=my/cuda:1' -> {"torch-gpu": ..., "gpu": ...}."""
    keys = [k for k in HUB_BASE_IMAGE_KEYS if k != "cpu"]
    hint = f"write KEY=IMAGE[,KEY=IMAGE...], e.g. torch-gpu=my/cuda-torch:1 (keys: {', '.join(keys)})"
    pairs = [item.strip().partition("=") for item in text.split(",") if item.strip()]
    for key, equals, image in pairs:
        if not equals or not key.strip() or not image.strip():
            raise SettingInvalid(
                f"AIDHUB_BASE_IMAGES entry {key + equals + image!r} is not KEY=IMAGE; {hint}."
            )
        if key.strip() == "cpu":
            raise SettingInvalid(
                "AIDHUB_BASE_IMAGES names cpu; set the CPU base with AIDHUB_BASE_IMAGE instead."
            )
    images = {key.strip(): image.strip() for key, _, image in pairs}
    try:
        return check_base_image_overrides(images)
    except BuildContextError as e:
        raise SettingInvalid(f"AIDHUB_BASE_IMAGES: {e}") from e


def _max_memory(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        return parse_size(text)
    except ValueError as e:
        raise SettingInvalid(f"AIDHUB_MAX_MEMORY={text!r} is not a size; use e.g. 2Gi or 512Mi.") from e


def _drift_every(text: str) -> float:
    if text.strip() == "0":
        return 0.0
    try:
        return parse_duration(text).total_seconds()
    except ValueError as e:
        raise SettingInvalid(
            f"AIDHUB_DRIFT_EVERY={text!r} is not a duration; use e.g. 1h, 30m or 0 (never)."
        ) from e


def _loop_settings(env) -> dict:
    """How often the alert rules and the review queue's selection run."""
    return {
        "alert_every_seconds": _every(env, "AIDHUB_ALERT_EVERY", Config.alert_every_seconds),
        "review_every_seconds": _every(env, "AIDHUB_REVIEW_EVERY", Config.review_every_seconds),
        "review_settle_seconds": _every(env, "AIDHUB_REVIEW_SETTLE", Config.review_settle_seconds),
    }


def _every(env, name: str, default: float) -> float:
    """'30' (seconds), '1m', '0' (never); empty: `default`."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text).total_seconds()
    except ValueError as e:
        raise SettingInvalid(
            f"{name}={text!r} is not a duration; use seconds (30), minutes (1m) or 0 (never)."
        ) from e


def _max_cpus(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        cpus = float(text)
    except ValueError:
        cpus = 0.0
    if not 0 < cpus < float("inf"):
        raise SettingInvalid(f"AIDHUB_MAX_CPUS={text!r} is not a number of CPUs; use e.g. 2 or 0.5.")
    return cpus

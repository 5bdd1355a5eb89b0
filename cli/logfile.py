"""Where `aid serve` logs: a rotating file under the hub's home for everything (gunicorn, huey, httpx,
the hub) at `--log-level`, and the terminal for warnings (every line with `-v`).

This is the only place that configures logging handlers; gunicorn applies it as its `logconfig_dict`,
so its own error log goes to the same file."""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

from hub.errors import SettingInvalid

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


def log_file_in(home: Path) -> Path:
    """The hub's log file, `home`/logs/hub.log, its folder made (SettingInvalid if it cannot be)."""
    path = home / "logs" / "hub.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingInvalid(
            f"Cannot write the hub's log in {path.parent} ({e.strerror}); "
            "set AIDHUB_HOME or --home to a folder you can write."
        ) from e
    return path


def logging_config(path: Path, level: str, verbose: bool = False) -> dict:
    """A `logging.config.dictConfig` dict: all loggers to the file at `level`, WARNING+ (or, with
    `verbose`, the same lines as the file) to stderr; gunicorn's loggers propagate to the root."""
    level = level.upper()
    root_level = min(logging.getLevelName(level), logging.WARNING)
    to_root = {"level": root_level, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "file": {"format": FORMAT},
            "terminal": {"()": TerminalFormatter, "fmt": FORMAT},
        },
        "handlers": _handlers(path, level, verbose),
        "root": {"level": root_level, "handlers": ["file", "terminal"]},
        "loggers": {"gunicorn.error": to_root, "gunicorn.access": to_root},
    }


def _handlers(path: Path, level: str, verbose: bool) -> dict:
    file = {"()": SharedLogFile, "filename": str(path), "maxBytes": MAX_BYTES, "backupCount": BACKUPS}
    terminal = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "file": {**file, "level": level, "formatter": "file"},
        "terminal": {**terminal, "level": level if verbose else "WARNING", "formatter": "terminal"},
    }


class TerminalFormatter(logging.Formatter):
    """One line per record: a traceback stays in the log file."""

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(bare) + (" (traceback in the log file)" if record.exc_info else "")


class SharedLogFile(RotatingFileHandler):
    """A rotating file that gunicorn's master and worker both write: each reopens the file when the
    other has rotated it, instead of writing on into (or rotating again) the file moved aside."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is not None and not _is_open_at(self.stream, self.baseFilename):
            self.stream.close()
            self.stream = self._open()
        return super().shouldRollover(record)


def _is_open_at(stream, path: str) -> bool:
    try:
        on_disk, opened = os.stat(path), os.fstat(stream.fileno())
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)

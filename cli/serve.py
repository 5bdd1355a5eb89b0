"""`aid serve`: the hub's web app under gunicorn, one worker process with threads."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from hub.config import Config


class HubServer(BaseApplication):
    def __init__(self, config: Config, threads: int):
        self.config_ = config
        self.threads = threads
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", f"{self.config_.host}:{self.config_.port}")
        self.cfg.set("workers", 1)  # the hub owns its model servers: one process supervises them
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", self.threads)
        self.cfg.set("timeout", 300)
        self.cfg.set("graceful_timeout", 10)
        self.cfg.set("accesslog", None)

    def load(self):
        from web.app import create_app

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return create_app(self.config_)


def serve(config: Config, threads: int = 32) -> None:
    HubServer(config, threads).run()

"""`aid serve`: the hub's web app under gunicorn: one gevent worker process.

The hub's request path is I/O (waiting on model servers); gevent serves it at a quarter of the CPU per
request of gunicorn's thread worker, which matters when the hub shares cores with the models it serves."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from hub.config import Config


class HubServer(BaseApplication):
    def __init__(self, config: Config, connections: int):
        self.config_ = config
        self.connections = connections
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", f"{self.config_.host}:{self.config_.port}")
        self.cfg.set("workers", 1)  # the hub owns its model servers: one process supervises them
        self.cfg.set("worker_class", "gunicorn.workers.ggevent.GeventPyWSGIWorker")
        self.cfg.set("worker_connections", self.connections)
        self.cfg.set("timeout", 300)
        self.cfg.set("graceful_timeout", 10)
        self.cfg.set("accesslog", None)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 27: no control socket in $HOME
            self.cfg.set("control_socket_disable", True)

    def load(self):
        from web.app import create_app

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return create_app(self.config_)


def serve(config: Config, connections: int = 1000) -> None:
    HubServer(config, connections).run()

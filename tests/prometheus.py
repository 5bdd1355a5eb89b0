"""A real Prometheus server scraping the hub, for the metrics tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.postgres import _free_port

CONFIG = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: {job}
    metrics_path: {path}
    static_configs:
      - targets: ["{target}"]
"""


class PrometheusServer:
    def __init__(self, root: Path, target: str, job: str = "aidhub", path: str = "/metrics"):
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError(
                "Prometheus is not installed: run 'make test' as root or 'apt-get install prometheus'."
            )
        self.binary, self.root = binary, root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "prometheus.yml").write_text(CONFIG.format(job=job, path=path, target=target))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        args = [
            self.binary, f"--config.file={self.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.root / "log", "wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not get ready: {(self.root / 'log').read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict]:
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}).json()
        return reply["data"]["result"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

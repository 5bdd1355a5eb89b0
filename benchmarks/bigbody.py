"""The hub's CPU per predict call for an image-sized input (1x3x224x224 float32), by kind of body.

An in-process Hub (the process runner, SQLite) serves `image-mean` (tests/test_big_inputs.py: an
ONNX ReduceMean over each image). Each call goes through the WSGI app that `aid serve` runs (the
fast path, Flask behind it), one call at a time, as a script would make them. The hub's CPU per
call is this process's CPU time (`time.process_time`: every thread of it, the prediction log's
writer included, after a flush) over the calls; the model server is another process and is not
counted. "wall" is one call's elapsed time, the model server's included.

Kinds: native JSON (3 MB), native `application/x-npy` (602 KB), v2 with binary tensors (the Triton
client's default), a 224x224 JPEG on the native route (decoded by Pillow, web/imagebodies.py), v2
JSON (a flat `data` list). A kind this hub does not accept is reported as such.

Run: `.venv/bin/python -m benchmarks.bigbody` (about 30 s); AIDHUB_BIGBODY_CALLS (default 40).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.serving import row
from tests.hubserver import cache_env

CALLS = int(os.environ.get("AIDHUB_BIGBODY_CALLS") or 40)
NAME = "image-mean"
SHAPE = (1, 3, 224, 224)
TARGET_MS = 10.0


def bodies(image: np.ndarray) -> dict[str, tuple[str, bytes, dict]]:
    """kind -> (path, body, extra environ)."""
    buffer = io.BytesIO()
    np.save(buffer, image)
    tensor = {"name": "image", "shape": list(image.shape), "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": image.nbytes}}]}).encode()
    native, v2 = f"/api/v1/models/{NAME}/predict", f"/v2/models/{NAME}/infer"
    return {
        "native JSON": (native, json.dumps({"inputs": {"image": image.tolist()}}).encode(), {}),
        "native x-npy": (native, buffer.getvalue(), {"CONTENT_TYPE": "application/x-npy"}),
        "v2 binary": (
            v2,
            header + image.tobytes(),
            {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": str(len(header))},
        ),
        "native image/jpeg": (native, jpeg(image), {"CONTENT_TYPE": "image/jpeg"}),
        "v2 JSON": (
            v2,
            json.dumps({"inputs": [{**tensor, "data": image.reshape(-1).tolist()}]}).encode(),
            {},
        ),
    }


def jpeg(image: np.ndarray) -> bytes:
    """The image as the 224x224 JPEG a user would send (quality 90): decoded and scaled by the hub."""
    from PIL import Image

    pixels = (image[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def call(app, token: str, path: str, body: bytes, extra: dict) -> str:
    environ = {
        "HTTP_AUTHORIZATION": f"Bearer {token}", "REQUEST_METHOD": "POST", "PATH_INFO": path,
        "QUERY_STRING": "", "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "HTTP_HOST": "localhost", **extra,
    }  # fmt: skip
    statuses = []
    b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0]


def measure(hub, app, token: str, path: str, body: bytes, extra: dict) -> tuple[float, float] | str:
    """(hub CPU ms, wall ms) per call, or the status of a refused call."""
    status = call(app, token, path, body, extra)
    if not status.startswith("200"):
        return status
    for _ in range(3):
        call(app, token, path, body, extra)
    hub.predlog.flush()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(CALLS):
        call(app, token, path, body, extra)
    hub.predlog.flush()
    return (time.process_time() - cpu) * 1000 / CALLS, (time.perf_counter() - wall) * 1000 / CALLS


def open_hub(home: Path):
    from hub.config import Config
    from hub.hub import Hub
    from tests.packages import archive
    from tests.test_big_inputs import image_mean_package

    env = {**cache_env(), "AIDHUB_RUNNER": "process", "AIDHUB_DATABASE_URL": f"sqlite:///{home}/hub.db"}
    hub = Hub(Config.load(env=env, home=home))
    hub.publish(archive(Path(image_mean_package(home / "package"))))
    build = hub.deploy(NAME)["build"]
    if hub.deployments.wait(build["id"]).status != "succeeded":
        hub.close()
        raise RuntimeError(f"{NAME} did not deploy: see its build log in {home}/hub.db")
    return hub


def run() -> list[dict]:
    from web.app import create_app

    image = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="aidhub-bigbody-") as folder:
        hub = open_hub(Path(folder) / "home")
        try:
            app, token = create_app(hub=hub), (hub.config.home / "admin-token").read_text().strip()
            rows = []
            for kind, (path, body, extra) in bodies(image).items():
                result = measure(hub, app, token, path, body, extra)
                if isinstance(result, str):
                    rows.append(row(f"{kind} ({len(body):,} B): refused", result, "", ""))
                    continue
                rows.append(
                    row(f"{kind} ({len(body):,} B): hub CPU per call", result[0], "ms", f"<= {TARGET_MS:g}")
                )
                rows.append(row(f"{kind} ({len(body):,} B): wall per call", result[1], "ms"))
            return rows
        finally:
            hub.undeploy(NAME)
            hub.close()


if __name__ == "__main__":
    for r in run():
        print(
            f"{r['name']:<52} {r['value']:>10.2f} {r['unit']:<3} {r.get('target', '')}"
            if isinstance(r["value"], float)
            else f"{r['name']:<52} {r['value']}"
        )

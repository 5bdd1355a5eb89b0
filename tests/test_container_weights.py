"""Weights images on the container runner, with the real engine at DOCKER_HOST: a version's large
weights become one image FROM its environment image, built once; a second version with the same
weights builds FROM it and sends none of them, and one with other weights gets its own. A missing
engine FAILS these tests (fixture `engine`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import time
from pathlib import Path

import pytest

from runners.buildcontext import weights_tag
from runners.container import image_tag
from runners.weights import WEIGHTS_IMAGE_MIN_BYTES
from tests.test_container_environments import container_runner, remove_images, steps
from tests.test_runner_process import predict, python_spec

MIB = 1024**2
WEIGHTS_BYTES = WEIGHTS_IMAGE_MIN_BYTES + 16 * MIB
PREDICT = '''"""Reads the head of its weights at setup, as a model opens its weights."""

import hashlib
from pathlib import Path


class Model:
    def setup(self):
        with open(Path(__file__).parent / "data" / "weights bin", "rb") as weights:
            self.head = hashlib.sha256(weights.read(1024 * 1024)).hexdigest()

    def predict(self, text, values):
        return {"upper": self.head, "total": sum(values), "setup_calls": 1}  # {note}
'''
CONTEXT = re.compile(r"\(context (.*): (\d+) files, ([0-9.]+) MB\)$")


@pytest.fixture
def runner(engine, docker_host, tmp_path):
    backend = container_runner(docker_host, tmp_path)
    yield backend
    for instance in backend.instances():
        backend.stop(instance)
    backend.close()


def random_weights(path: Path) -> tuple[Path, str]:
    """WEIGHTS_BYTES of new random bytes (no earlier run's layer fits them): the file, and the
    sha256 of its first MiB (what the model answers)."""
    with open(path, "wb") as handle:
        for start in range(0, WEIGHTS_BYTES, 16 * MIB):
            handle.write(os.urandom(min(16 * MIB, WEIGHTS_BYTES - start)))
    with open(path, "rb") as handle:
        return path, hashlib.sha256(handle.read(MIB)).hexdigest()


def version(folder: Path, number: str, weights: Path):
    """A version of a model that reads `weights`, laid out as the hub's store does (files 0444,
    the weights hard-linked, under a name with a space that never reaches a Dockerfile)."""
    package = folder / number
    (package / "data").mkdir(parents=True)
    (package / "predict.py").write_text(PREDICT.replace("{note}", number))
    os.link(weights, package / "data" / "weights bin")
    for path in package.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o755)
    spec = python_spec("runner_echo", version=number, name="weights-echo")
    return dataclasses.replace(spec, digest=secrets.token_hex(32), package_dir=package)


def keys_in(lines: list[str]) -> list[str]:
    """The weights keys named in a build log, in order."""
    return re.findall(r"aidhub-weights:([0-9a-f]{64})", "\n".join(lines))


def said(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def weights_layers(engine, reference: str) -> list[str]:
    return engine.images.get(reference).attrs["RootFS"]["Layers"]


def remove_all(engine, specs, weights_keys) -> None:
    """The version images first: a weights image with children cannot go."""
    for spec in specs:
        remove_images(engine, f"aidhub.digest={spec.digest}")
    for key in weights_keys:
        remove_images(engine, f"aidhub.weights={key}")


@pytest.mark.slow
def test_a_second_version_with_the_same_weights_sends_none_and_shares_the_layer(runner, engine, tmp_path):
    weights, head = random_weights(tmp_path / "weights.bin")
    first, second = version(tmp_path, "12.0.0", weights), version(tmp_path, "12.1.0", weights)
    built, lines = [], []
    try:
        runner.build(first, built.append)
        made = said(built, "Building weights image aidhub-weights:")
        key = keys_in([made])[0]
        assert "(1 weight file(s), 80Mi; context Dockerfile, weights/: 2 files, 83.9 MB)" in made
        began = time.monotonic()
        instance = runner.start(second, lines.append)
        print(f"second version, same weights: build + start to ready {time.monotonic() - began:.1f} s")
        reused = said(lines, "The weights image ")
        assert reused.startswith(f"The weights image {weights_tag(key)} exists (1 weight file(s), 80Mi)")
        assert reused.endswith("building FROM it (no weights to send)")
        context = said(lines, f"Building image {image_tag(second)} FROM ")
        assert f"aidhub-weights:{key} (context Dockerfile, model/, service/: " in context
        assert float(CONTEXT.search(context).group(3)) < 1.0  # the code and the service only
        assert not any("COPY weights/" in step for step in steps(lines)), steps(lines)
        assert predict(instance, {"text": "x", "values": [1]}).json()["upper"] == head
        shared = weights_layers(engine, weights_tag(key))
        for spec in (first, second):
            assert weights_layers(engine, image_tag(spec))[: len(shared)] == shared
            labels = engine.images.get(image_tag(spec)).labels
            assert (labels["aidhub.role"], labels["aidhub.weights"]) == ("version", key)
    finally:
        remove_all(engine, (first, second), keys_in(built + lines))


@pytest.mark.slow
def test_a_version_with_other_weights_gets_its_own_weights_image(runner, engine, tmp_path):
    (one, _), (other, head) = (random_weights(tmp_path / f"weights-{n}.bin") for n in (1, 2))
    first, second = version(tmp_path, "13.0.0", one), version(tmp_path, "13.1.0", other)
    built, lines = [], []
    try:
        runner.build(first, built.append)
        instance = runner.start(second, lines.append)
        keys = [keys_in([said(log, "Building weights image ")])[0] for log in (built, lines)]
        assert keys[0] != keys[1]
        assert not any(line.startswith("The weights image ") for line in lines), lines
        context = said(lines, f"Building image {image_tag(second)} FROM ")
        assert re.search(
            rf" FROM \S*aidhub-weights:{keys[1]} \(context Dockerfile, model/, service/: ", context
        )
        assert predict(instance, {"text": "x", "values": [1]}).json()["upper"] == head
        assert engine.images.get(image_tag(second)).labels["aidhub.weights"] == keys[1]
        mine, theirs = (weights_layers(engine, weights_tag(key))[-1] for key in keys)
        assert mine != theirs
    finally:
        remove_all(engine, (first, second), keys_in(built + lines))

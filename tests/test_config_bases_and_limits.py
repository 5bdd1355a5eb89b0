"""The hub's base images and resource maximums (AIDHUB_BASE_IMAGE[S], AIDHUB_MAX_*), and what a
version's ServeSpec carries from its manifest: cpu, memory in bytes, base image overrides."""

from pathlib import Path

import pytest

from hub.config import Config
from hub.specs import spec_for
from registry.manifest import parse_manifest
from registry.models import ModelRow, VersionRow


def load(tmp_path, **env) -> Config:
    return Config.load(env={"AIDHUB_HOME": str(tmp_path), **env})


def test_defaults_are_the_local_cpu_base_and_no_maximums(tmp_path):
    config = load(tmp_path)
    assert (config.base_image, config.base_images) == ("aidhub/base:py3.11", {})
    assert (config.max_memory_bytes, config.max_cpus) == (None, None)


def test_base_images_and_maximums_are_read_from_the_environment(tmp_path):
    config = load(
        tmp_path,
        AIDHUB_BASE_IMAGE="localhost/aidhub/base:py3.12",
        AIDHUB_BASE_IMAGES=" torch-gpu=my/cuda-torch:1 , gpu=my/cuda:12.8,onnx-cpu=my/ort:1.20,",
        AIDHUB_MAX_MEMORY="2Gi",
        AIDHUB_MAX_CPUS="1.5",
    )
    assert config.base_image == "localhost/aidhub/base:py3.12"
    assert config.base_images == {
        "torch-gpu": "my/cuda-torch:1",
        "gpu": "my/cuda:12.8",
        "onnx-cpu": "my/ort:1.20",
    }
    assert (config.max_memory_bytes, config.max_cpus) == (2 * 1024**3, 1.5)


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "torch-gpu",
            "AIDHUB_BASE_IMAGES entry 'torch-gpu' is not KEY=IMAGE; write KEY=IMAGE[,KEY=IMAGE...]",
        ),
        ("=my/cuda:1", "AIDHUB_BASE_IMAGES entry '=my/cuda:1' is not KEY=IMAGE;"),
        ("gpu=", "AIDHUB_BASE_IMAGES entry 'gpu=' is not KEY=IMAGE;"),
        (
            "cpu=python:3.11-slim",
            "AIDHUB_BASE_IMAGES names cpu; set the CPU base with AIDHUB_BASE_IMAGE instead.",
        ),
        (
            "tensorflow-gpu=my/tf:1",
            "AIDHUB_BASE_IMAGES: Base image key 'tensorflow-gpu' is not known: use one of",
        ),
        ("gpu=my/cuda", "AIDHUB_BASE_IMAGES: The base image 'my/cuda' cannot go into an image: use an image"),
        ("gpu=my/cuda:1\nRUN id", "AIDHUB_BASE_IMAGES: The base image 'my/cuda:1\\nRUN id' cannot go into"),
        ("gpu=my/cuda:1 AS x", "AIDHUB_BASE_IMAGES: The base image 'my/cuda:1 AS x' cannot go into"),
    ],
)
def test_malformed_base_images_setting_is_refused_with_the_fix(tmp_path, value, message):
    with pytest.raises(ValueError) as caught:
        load(tmp_path, AIDHUB_BASE_IMAGES=value)
    assert str(caught.value).startswith(message), str(caught.value)


def test_hostile_cpu_base_image_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^AIDHUB_BASE_IMAGE: The base image 'x:1\\nRUN id' cannot go"):
        load(tmp_path, AIDHUB_BASE_IMAGE="x:1\nRUN id")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("AIDHUB_MAX_MEMORY", "2g", "AIDHUB_MAX_MEMORY='2g' is not a size; use e.g. 2Gi or 512Mi."),
        ("AIDHUB_MAX_CPUS", "two", "AIDHUB_MAX_CPUS='two' is not a number of CPUs; use e.g. 2 or 0.5."),
        ("AIDHUB_MAX_CPUS", "0", "AIDHUB_MAX_CPUS='0' is not a number of CPUs; use e.g. 2 or 0.5."),
        ("AIDHUB_MAX_CPUS", "nan", "AIDHUB_MAX_CPUS='nan' is not a number of CPUs; use e.g. 2 or 0.5."),
    ],
)
def test_malformed_maximum_is_refused_with_the_fix(tmp_path, name, value, message):
    with pytest.raises(ValueError) as caught:
        load(tmp_path, **{name: value})
    assert str(caught.value) == message


def version_row(**fields) -> VersionRow:
    data = {
        "name": "iris",
        "version": "1.0.0",
        "task": "t",
        "framework": "onnx",
        "artifact": "m.onnx",
        **fields,
    }
    manifest = parse_manifest(data).to_dict()
    return VersionRow(model=ModelRow(name="iris"), version="1.0.0", digest="ab" * 32, manifest=manifest,
                      inputs={}, outputs={})  # fmt: skip


def test_spec_carries_the_manifest_cpu_and_memory_as_plain_numbers():
    spec = spec_for(version_row(resources={"cpu": 0.5, "memory": "256Mi"}), Path("/p"))
    assert (spec.cpus, spec.memory_bytes, spec.gpu) == (0.5, 268_435_456, "0")
    default = spec_for(version_row(), Path("/p"))
    assert (default.cpus, default.memory_bytes, default.base_images) == (1.0, 1024**3, {})


def test_spec_carries_the_manifest_base_image_per_device():
    one = spec_for(version_row(base_image="me/base:1"), Path("/p"))
    assert one.base_images == {"cpu": "me/base:1", "gpu": "me/base:1"}
    per_device = spec_for(version_row(base_image={"gpu": "me/cuda:1"}), Path("/p"))
    assert per_device.base_images == {"gpu": "me/cuda:1"}

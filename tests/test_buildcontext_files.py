"""The container build contexts on disk: the environment's (Dockerfile and requirements beside the
wheels) and a version's (the package's files hard-linked from the store into weights/ and model/,
the service; no wheels).

Pure and fast: no container engine; the files are written into tmp_path (tests/test_buildcontext.py
checks the Dockerfile's text).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from runners.buildcontext import BuildContextError, render_environment_dockerfile, render_requirements
from runners.contextfiles import (
    WEIGHTS_MIN_BYTES,
    context_summary,
    is_weight,
    write_environment_context,
    write_version_context,
)
from runners.service import render_service
from tests.test_buildcontext import BASE, ENV_IMAGE, KEY, REQS, make_spec, render


@pytest.fixture
def package(tmp_path) -> Path:
    root = tmp_path / "package"
    (root / "data").mkdir(parents=True)
    (root / "aid.yaml").write_text("name: iris-classifier\nversion: 1.2.0\n")
    (root / "model.onnx").write_bytes(bytes(range(256)))
    (root / "data" / "labels.txt").write_text("setosa\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "predict.cpython-311.pyc").write_bytes(b"stale")
    return root


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    root = tmp_path / "wheelhouse"
    root.mkdir()
    for name in ("numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl", "bentoml-1.4.39-py3-none-any.whl"):
        (root / name).write_bytes(name.encode())
    (root / ".filled-0123456789abcdef").write_text("[]")
    (root / ".lock").write_text("")
    return root


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- the context on disk ------------------------------------------------------------------


def test_environment_context_holds_dockerfile_requirements_and_wheels(tmp_path, wheelhouse):
    dest = write_environment_context(tmp_path / "ctx", BASE, "3.11", KEY, REQS, wheelhouse)
    assert (dest / "Dockerfile").read_text() == render_environment_dockerfile(BASE, "3.11", KEY, REQS)
    assert (dest / f"requirements-{KEY}.txt").read_text() == render_requirements(REQS)
    assert sorted(tree(dest)) == [
        "Dockerfile",
        f"requirements-{KEY}.txt",
        "wheelhouse/bentoml-1.4.39-py3-none-any.whl",
        "wheelhouse/numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]


def test_version_context_holds_dockerfile_model_and_service_and_no_wheels(tmp_path, package):
    spec = make_spec(package)
    dest = write_version_context(spec, tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    files = tree(dest)
    assert (dest / "Dockerfile").read_text() == render(spec)
    assert sorted(p.name for p in dest.iterdir()) == ["Dockerfile", "model", "service", "weights"]
    assert sorted(f for f in files if f.startswith(("model/", "weights/"))) == [
        "model/aid.yaml",
        "model/data/labels.txt",
        "weights/model.onnx",  # the artifact
    ]
    assert "service/service.py" in files and "service/aid_flavors/__init__.py" in files
    assert not any("__pycache__" in f for f in files)
    assert context_summary(dest).startswith("Dockerfile, model/, service/, weights/: ")


def test_service_loads_the_model_from_the_image_path(tmp_path, package):
    dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    text = (dest / "service" / "service.py").read_text()
    assert text == render_service(make_spec(package), package_dir="/app/model")
    assert '"package_dir": "/app/model"' in text


def test_wheels_are_hard_links_to_the_shared_wheelhouse(tmp_path, wheelhouse):
    dest = write_environment_context(tmp_path / "ctx", BASE, "3.11", KEY, REQS, wheelhouse)
    for wheel in (dest / "wheelhouse").iterdir():
        assert wheel.samefile(wheelhouse / wheel.name)


def test_model_files_are_readable_by_the_container_user(tmp_path, package):
    (package / "model.onnx").chmod(0o600)
    dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    assert (dest / "weights" / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert not (dest / "weights" / "model.onnx").samefile(package / "model.onnx")  # copied: chmod-ed


def test_writing_twice_gives_the_same_files_and_bytes(tmp_path, package):
    first = write_version_context(make_spec(package), tmp_path / "a", ENV_IMAGE, KEY, BASE)
    second = write_version_context(make_spec(package), tmp_path / "b", ENV_IMAGE, KEY, BASE)
    assert tree(first) == tree(second)


def test_symlink_in_the_package_is_refused(tmp_path, package):
    (package / "secret").symlink_to("/etc/passwd")
    with pytest.raises(BuildContextError, match="secret is a link"):
        write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)


def test_empty_wheelhouse_is_refused_with_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildContextError, match="holds no wheels; fill it"):
        write_environment_context(tmp_path / "ctx", BASE, "3.11", KEY, REQS, tmp_path / "empty")


def test_non_empty_destination_is_refused(tmp_path, package):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "keep.txt").write_text("mine")
    with pytest.raises(BuildContextError, match="not empty"):
        write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    assert (tmp_path / "ctx" / "keep.txt").read_text() == "mine"


def test_hostile_value_writes_nothing(tmp_path, package, wheelhouse):
    with pytest.raises(BuildContextError):
        write_version_context(
            make_spec(package, version="1.0.0\nRUN id"), tmp_path / "ctx", ENV_IMAGE, KEY, BASE
        )
    with pytest.raises(BuildContextError):
        write_environment_context(tmp_path / "ctx", BASE, "3.11", KEY, [*REQS, "x\nRUN id"], wheelhouse)
    assert not (tmp_path / "ctx").exists()


# --- the package files: hard links, and the weights layer ---------------------------------


def store_like(root: Path) -> Path:
    """Make every file of `root` read-only 0444, as the hub's blob store lays packages out."""
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
    return root


def test_package_files_from_the_store_are_hard_links_left_read_only(tmp_path, package):
    store_like(package)
    dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    for rel in ("model/aid.yaml", "model/data/labels.txt", "weights/model.onnx"):
        linked = dest / rel
        assert linked.samefile(package / rel.split("/", 1)[1])
        assert linked.stat().st_mode & 0o7777 == 0o444  # readable by the image's user as it is
    assert (package / "aid.yaml").stat().st_mode & 0o7777 == 0o444  # the store's file is untouched


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o4755, 0o666])
def test_files_with_another_mode_are_copied_as_0644(tmp_path, package, mode):
    (package / "aid.yaml").chmod(mode)
    dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    copied = dest / "model" / "aid.yaml"
    assert copied.stat().st_mode & 0o7777 == 0o644 and not copied.samefile(package / "aid.yaml")
    assert (package / "aid.yaml").stat().st_mode & 0o7777 == mode


def test_a_refused_hard_link_falls_back_to_a_copy(tmp_path, package):
    """The context on another filesystem (the tmpfs of /dev/shm): the kernel refuses the hard links."""
    store_like(package)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        assert os.stat(other).st_dev != os.stat(package).st_dev, "/dev/shm must be another filesystem"
        dest = write_version_context(make_spec(package), Path(other) / "ctx", ENV_IMAGE, KEY, BASE)
        copied = dest / "weights" / "model.onnx"
        assert copied.read_bytes() == (package / "model.onnx").read_bytes()
        assert copied.stat().st_mode & 0o7777 == 0o644 and not copied.samefile(package / "model.onnx")


def test_large_files_and_the_artifact_go_to_the_weights_folder(tmp_path, package):
    (package / "data" / "embeddings.bin").write_bytes(b"\0" * WEIGHTS_MIN_BYTES)
    (package / "data" / "almost.bin").write_bytes(b"\0" * (WEIGHTS_MIN_BYTES - 1))
    (package / "predict.py").write_text("class Model: ...\n")
    dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    files = tree(dest)
    assert sorted(f for f in files if f.startswith("weights/")) == [
        "weights/data/embeddings.bin",
        "weights/model.onnx",
    ]
    assert sorted(f for f in files if f.startswith("model/")) == [
        "model/aid.yaml",
        "model/data/almost.bin",
        "model/data/labels.txt",
        "model/predict.py",
    ]


@pytest.mark.parametrize(
    ("rel", "size", "artifact", "weight"),
    [
        ("model.onnx", 10, "model.onnx", True),
        ("model.onnx", 10, "./model.onnx", True),
        ("saved/variables/v.data", 10, "saved", True),
        ("saved/variables/v.data", 10, "saved/", True),
        ("saved2/v.data", 10, "saved", False),
        ("predict.py", 10, None, False),
        ("predict.py", WEIGHTS_MIN_BYTES, None, True),
        ("predict.py", WEIGHTS_MIN_BYTES - 1, "model.onnx", False),
    ],
)
def test_what_is_a_weight(rel, size, artifact, weight):
    assert is_weight(rel, size, artifact) is weight


def test_a_package_without_weights_still_has_both_folders(tmp_path):
    package = tmp_path / "small"
    package.mkdir()
    (package / "aid.yaml").write_text("name: x\n")
    spec = make_spec(package, framework="python", artifact=None, entrypoint="predict.py:Model")
    dest = write_version_context(spec, tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    assert list((dest / "weights").iterdir()) == [] and (dest / "model" / "aid.yaml").is_file()


def test_odd_file_names_stay_out_of_the_dockerfile(tmp_path):
    package = tmp_path / "odd"
    names = ["a b.txt", 'q"uote.txt', "it's.txt", "$HOME.txt", "back\\slash.txt", "COPY x y", "d i r/w e.bin"]
    for name in names:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_bytes(name.encode() * (WEIGHTS_MIN_BYTES if name.endswith(".bin") else 1))
    spec = make_spec(store_like(package))
    dest = write_version_context(spec, tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    assert (dest / "Dockerfile").read_text() == render(make_spec())
    files = tree(dest)
    assert "weights/d i r/w e.bin" in files and "model/COPY x y" in files
    assert {f"model/{n}" for n in names if not n.endswith(".bin")} <= set(files)


def test_folders_are_listable_by_the_image_user_whatever_the_umask(tmp_path, package):
    (package / "data" / "big.bin").write_bytes(b"\0" * WEIGHTS_MIN_BYTES)
    (package / "empty").mkdir()
    old = os.umask(0o077)
    try:
        dest = write_version_context(make_spec(package), tmp_path / "ctx", ENV_IMAGE, KEY, BASE)
    finally:
        os.umask(old)
    for folder in ("weights", "weights/data", "model", "model/data", "model/empty"):
        assert (dest / folder).stat().st_mode & 0o777 == 0o755, folder

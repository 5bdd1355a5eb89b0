"""The weights image's parts without an engine: its Dockerfile, its key, its context, and a version
context that leaves the weights to it (tests/test_container_weights.py builds them through the
engine)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from runners.buildcontext import (
    BuildContextError,
    render_version_dockerfile,
    render_weights_dockerfile,
    weights_tag,
)
from runners.contextfiles import weight_files, write_version_context, write_weights_context
from runners.weights import weights_key
from tests.test_buildcontext import BASE, ENV_IMAGE, KEY, make_spec

MIB = 1024**2
WKEY = "ab" * 32


@pytest.fixture
def package(tmp_path) -> Path:
    """A package as the hub's store lays it out (files 0444): a 2 MiB weight file under a folder
    whose name has a space, a small artifact, code and a card."""
    root = tmp_path / "package"
    (root / "big data").mkdir(parents=True)
    (root / "big data" / "weights.bin").write_bytes(os.urandom(2 * MIB))
    (root / "model.onnx").write_bytes(b"tiny artifact")
    (root / "predict.py").write_text("class Model: ...\n")
    (root / "README.md").write_text("# card\n")
    for path in root.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o755)
    return root


def test_the_weights_dockerfile_copies_the_weights_folder_and_labels_the_key():
    text = render_weights_dockerfile(ENV_IMAGE, WKEY, KEY, BASE)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        f"FROM {ENV_IMAGE}",
        "COPY weights/ /app/model/",
        f'LABEL aidhub.role="weights" aidhub.weights="{WKEY}" aidhub.env="{KEY}" aidhub.base="{BASE}"',
    ]
    assert weights_tag(WKEY) == f"aidhub-weights:{WKEY}"


@pytest.mark.parametrize("bad", ["", "AB" * 32, "ab" * 31, f"{WKEY}\nRUN id", f'{WKEY}" x="y'])
def test_a_weights_key_that_is_not_sha256_hex_never_reaches_a_dockerfile(bad):
    with pytest.raises(BuildContextError, match="weights key"):
        render_weights_dockerfile(ENV_IMAGE, bad, KEY, BASE)
    with pytest.raises(BuildContextError, match="weights key"):
        weights_tag(bad)


def test_the_weights_are_the_large_files_and_the_artifact(package):
    files = weight_files(package, "model.onnx")
    assert [rel for rel, _ in files] == ["big data/weights.bin", "model.onnx"]
    assert [rel for rel, _ in weight_files(package)] == ["big data/weights.bin"]


def test_a_link_in_the_package_is_refused_before_any_weights_context(package, tmp_path):
    (package / "big data" / "escape").symlink_to("/etc/passwd")
    with pytest.raises(BuildContextError, match="escape is a link"):
        weight_files(package)


def test_the_key_names_the_environment_image_and_each_files_bytes_and_path(package, tmp_path):
    files = weight_files(package, "model.onnx")
    digests = {rel: hashlib.sha256(path.read_bytes()).hexdigest() for rel, path in files}
    hashed = weights_key("sha256:env1", files)
    assert weights_key("sha256:env1", files, digests) == hashed  # the hub's digests: nothing read
    assert weights_key("sha256:env1", list(reversed(files))) == hashed
    assert weights_key("sha256:env2", files) != hashed
    assert weights_key("sha256:env1", files, {**digests, "model.onnx": "cd" * 32}) != hashed
    moved = [("elsewhere/weights.bin", files[0][1]), files[1]]
    assert weights_key("sha256:env1", moved) != hashed


def test_the_weights_context_holds_only_the_weights_hard_linked(package, tmp_path):
    files = weight_files(package, "model.onnx")
    dest = write_weights_context(tmp_path / "ctx", files, ENV_IMAGE, WKEY, KEY, BASE)
    found = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert found == ["Dockerfile", "weights/big data/weights.bin", "weights/model.onnx"]
    assert (dest / "weights" / "big data" / "weights.bin").samefile(package / "big data" / "weights.bin")
    assert (dest / "Dockerfile").read_text() == render_weights_dockerfile(ENV_IMAGE, WKEY, KEY, BASE)


def test_a_version_built_from_its_weights_image_sends_no_weights(package, tmp_path):
    spec = make_spec(package_dir=package, artifact="model.onnx")
    weights_image = f"localhost/{weights_tag(WKEY)}"
    dest = write_version_context(spec, tmp_path / "ctx", weights_image, KEY, BASE, with_weights=False)
    assert sorted(p.name for p in dest.iterdir()) == ["Dockerfile", "model", "service"]
    model = sorted(p.relative_to(dest / "model").as_posix() for p in (dest / "model").rglob("*"))
    assert model == ["README.md", "big data", "predict.py"]  # the folder stays: its files are in the layer
    text = (dest / "Dockerfile").read_text()
    assert text.startswith("# Generated") and f"\nFROM {weights_image}\n" in text
    assert "COPY weights/" not in text and "COPY model/ /app/model/" in text
    assert render_version_dockerfile(spec, weights_image, KEY, BASE, with_weights=False) == text


def test_the_hubs_spec_carries_the_blob_digests_so_the_key_needs_no_hashing(hub, publish):
    from registry.models import VersionRow

    reply = publish(name="weights-digests", version="1.0.0")
    row = VersionRow.get(VersionRow.digest == reply["digest"])
    spec = hub._spec(row)
    root = Path(spec.package_dir)
    files = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    assert spec.files == files and len(files) == reply["files"] >= 3
    on_disk = {rel: path for rel, path in weight_files(spec.package_dir, spec.artifact)}
    assert set(on_disk) == {spec.artifact}
    assert weights_key("sha256:env", list(on_disk.items()), spec.files) == weights_key(
        "sha256:env", list(on_disk.items())
    )

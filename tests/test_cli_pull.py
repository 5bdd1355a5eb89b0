"""`aid pull` against a real hub: every file streamed into place with its sha256 checked, a partial
file continued with a range request, a file the hub damaged refused, paths kept inside the folder."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cli.progress import human
from cli.pull import PullFailed, safe_target
from tests.hubserver import HubProcess
from tests.packages import python_package
from tests.test_cli_publish import (
    MB,
    CountingProxy,
    big_package,
    peak_rss_mb,
    random_file,
    run_aid,
    sha256,
)

WEIGHTS = 100 * MB


def files_of(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = HubProcess(tmp_path_factory.mktemp("pull") / "home").start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def package(hub, tmp_path_factory):
    """pulled-model 1.0.0: 100 MB of random weights, a file in a subfolder and an empty one."""
    root = big_package(tmp_path_factory.mktemp("pkg") / "pulled-model", "pulled-model", size=WEIGHTS)
    random_file(root / "extra" / "tokenizer.bin", 3 * MB)
    (root / "extra" / "empty.txt").write_bytes(b"")
    done = run_aid(hub.url, "publish", str(root), env=hub.env)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def pulled(hub, package, tmp_path_factory):
    """The package pulled with `aid pull NAME` (no version, no -o) run in a fresh folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    done, peak_mb = peak_rss_mb(hub.url, "pull", "pulled-model", env=hub.env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return cwd / "pulled-model-1.0.0", done, peak_mb


def test_pull_downloads_every_file_with_its_digest(package, pulled):
    dest, done, _ = pulled
    source = files_of(package)
    assert files_of(dest) == source
    assert not list(dest.rglob("*.part"))
    total = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
    assert done.stdout.splitlines() == [
        f"Downloading {len(source)} of {len(source)} files ({human(total)})",
        f"Pulled pulled-model@1.0.0: {len(source)} files ({human(total)}) into pulled-model-1.0.0",
    ]
    assert "\r" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if " / " in line]
    assert progress and progress[-1].startswith(f"  {human(total)} / {human(total)}  100%")


def test_pull_streams_a_mebibyte_at_a_time(hub, pulled):
    """100 MB downloaded: the process holds about what `aid status` holds, and the allocator's heap
    around the 1 MiB chunks (+16.4 MiB once on a loaded machine); reading the file whole would be +100."""
    *_, peak_mb = pulled
    _, baseline_mb = peak_rss_mb(hub.url, "status", env=hub.env)
    assert peak_mb < baseline_mb + 32, (peak_mb, baseline_mb)


def test_pulling_again_downloads_nothing(hub, pulled, tmp_path):
    dest, *_ = pulled
    proxy = CountingProxy(hub.port)
    done = run_aid(proxy.url, "pull", "pulled-model@1.0.0", "-o", str(dest), env=hub.env)
    proxy.close()
    assert done.returncode == 0, done.stderr
    assert re.match(r"All \d+ files are already there with the right digest\n", done.stdout)
    assert proxy.received < 50_000


def test_an_interrupted_pull_resumes_with_a_range_request(hub, package, pulled, tmp_path):
    dest = tmp_path / "resumed"
    shutil.copytree(pulled[0], dest)
    weights = dest / "weights.bin"
    weights.rename(dest / "weights.bin.part")
    os.truncate(dest / "weights.bin.part", 40 * MB)
    proxy = CountingProxy(hub.port)
    done = run_aid(proxy.url, "pull", "pulled-model@1.0.0", "-o", str(dest), env=hub.env)
    proxy.close()
    assert done.returncode == 0, done.stderr
    count = len(files_of(package))
    resuming = (
        f"Downloading 1 of {count} files ({human(WEIGHTS - 40 * MB)})\nResuming weights.bin at 40.0 MB\n"
    )
    assert resuming in done.stdout
    assert files_of(dest) == files_of(package)
    assert WEIGHTS - 40 * MB <= proxy.received < WEIGHTS - 40 * MB + 100_000


def test_a_file_the_hub_damaged_is_refused_and_deleted(hub, tmp_path):
    root = python_package(tmp_path / "damaged", "damaged")
    random_file(root / "weights.bin", 2 * MB)
    assert run_aid(hub.url, "publish", str(root), env=hub.env).returncode == 0
    blob = hub.home / "blobs" / "sha256" / sha256(root / "weights.bin")[:2] / sha256(root / "weights.bin")
    blob.chmod(0o644)
    with open(blob, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    dest = tmp_path / "out"
    done = run_aid(hub.url, "pull", "damaged@1.0.0", "-o", str(dest), env=hub.env)
    assert done.returncode == 1
    assert re.search(
        r"Error: weights\.bin: the bytes received hash to sha256:[0-9a-f]{12}, not to", done.stderr
    )
    assert not (dest / "weights.bin").exists() and not (dest / "weights.bin.part").exists()


def test_an_unknown_model_is_one_line_and_exit_1(hub, tmp_path):
    done = run_aid(hub.url, "pull", "no-such-model@1.0.0", "-o", str(tmp_path / "x"), env=hub.env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("Error: ") and len(done.stderr.splitlines()) == 1


def test_status_counts_the_blob_store(hub, package):
    done = run_aid(hub.url, "status", env=hub.env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^storage  \S+ \S*B in \d+ blobs for \S+ \S*B of files \(\S+ \S*B deduplicated\)$",
                     done.stdout, re.M), done.stdout  # fmt: skip


@pytest.mark.parametrize(
    "path", ["../evil", "/etc/passwd", "a/../../evil", "a\\..\\evil", "a//b", "./a", "", "."]
)
def test_paths_that_leave_the_folder_are_refused(tmp_path, path):
    with pytest.raises(PullFailed):
        safe_target(tmp_path / "dest", path)


def test_a_symlink_in_the_folder_cannot_lead_out_of_it(tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "weights").symlink_to(tmp_path)
    assert safe_target(tmp_path / "dest", "sub/model.bin") == tmp_path / "dest" / "sub" / "model.bin"
    with pytest.raises(PullFailed):
        safe_target(tmp_path / "dest", "weights/model.bin")

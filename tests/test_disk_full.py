"""A disk that fills up while a blob is stored, for real: the hub's blob folder is a 16 MiB tmpfs
(mounting one needs root, as CI runs the tests), and AIDHUB_MIN_FREE_DISK is 0, so that the check
before an upload lets it start and the writes themselves meet ENOSPC. "Another writer" takes the disk's
free space halfway through the upload: the request body is read from a stream that writes a file
filling the disk once the hub has read part of it (after the hub checked the free space).

What must hold: a 507 naming the blob folder, its free bytes and the fix; no blob under the sha256;
no temp file; a part cut back to where it stood, so that the space is free again and the same part
can be sent again; nothing stored before lost. Through the Flask test client, and once through
`aid serve` and `aid publish` (the CLI prints the 507 and exits 2, then resumes). The database is
SQLite off the small disk: what fills up here is the blob store, whatever the database."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.files import list_package
from registry.models import VersionRow
from registry.package import pack
from tests.conftest import admin_client
from tests.hubserver import AID, HubProcess
from tests.packages import python_package

MiB = 1024 * 1024
DISK = 16 * MiB
FILLER = "other-writer.bin"  # the file of the other writer, on the small disk


@contextlib.contextmanager
def tmpfs(folder: Path, size: int) -> Iterator[Path]:
    """`folder`, a tmpfs of `size` bytes while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(
            f"This test mounts a small tmpfs in the hub's home and needs root (CI runs as root): "
            f"{' '.join(mount)} failed: {done.stderr.strip()}",
            pytrace=False,
        )
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """The hub's blob folder (`tmp_path/home/blobs`), a tmpfs of DISK bytes."""
    with tmpfs(tmp_path / "home" / "blobs", DISK) as blobs:
        yield blobs


@pytest.fixture
def full_hub(small_disk, open_hub, tmp_path):
    """A hub whose blob folder is the small disk, with its database off it, refusing nothing for the
    free disk beforehand (AIDHUB_MIN_FREE_DISK=0)."""
    hub = open_hub(tmp_path / "home", f"sqlite:///{tmp_path}/hub.db", min_free_disk_bytes=0)
    yield hub
    hub.close()


@pytest.fixture
def api(full_hub):
    from web.app import create_app

    return admin_client(create_app(hub=full_hub))


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def take_all_space(folder: Path) -> int:
    """Another writer fills the disk of `folder` with a file of its own, writing until the disk is
    full; return the bytes it took."""
    taken = 0
    with open(folder / FILLER, "ab", buffering=0) as f:
        while True:
            try:
                taken += f.write(os.urandom(MiB))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    assert free_bytes(folder) == 0
    return taken


class FillingStream(io.BytesIO):
    """A request body that fills the disk of `folder` (take_all_space) once `at` of its bytes are read."""

    def __init__(self, data: bytes, at: int, folder: Path):
        super().__init__(data)
        self.at, self.folder, self.length, self.taken = at, folder, len(data), 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not self.taken and self.tell() >= self.at:
            self.taken = take_all_space(self.folder)
        return chunk


def random_bytes(size: int) -> bytes:
    return os.urandom(size)  # incompressible: a .tar.gz of it is as large


def blob_files(blobs: Path) -> dict[str, int]:
    """Every blob in the store, by sha256, with its size."""
    return {p.name: p.stat().st_size for p in (blobs / "sha256").glob("*/*")}


def leftovers(blobs: Path) -> list[str]:
    """Temp files and parts in the blob folder."""
    return sorted(p.name for p in [*blobs.glob("tmp/*"), *blobs.glob("uploads/*")] if p.suffix != ".lock")


def send_files(api, root: Path) -> list:
    """Upload every file of the package in `root`, one part each; its file list."""
    entries = list_package(root)
    for e in entries:
        data = (root / e.path).read_bytes()
        reply = api.patch(f"/api/v1/blobs/{e.sha256}?offset=0&size={e.size}", data=data)
        assert reply.status_code == 200 and reply.json["complete"], reply.json
    return [e.to_dict() for e in entries]


def publish_v1(api, tmp_path: Path) -> Path:
    """A version stored before the disk fills."""
    root = python_package(tmp_path / "v1", "steady")
    (root / "weights.bin").write_bytes(random_bytes(2 * MiB))
    reply = api.post("/api/v1/models", json={"files": send_files(api, root)})
    assert reply.status_code == 201 and reply.json["version"] == "1.0.0", reply.json
    return root


def assert_reads_back_whole(api, root: Path) -> None:
    """Every file of steady@1.0.0 reads back as it was published."""
    listing = api.get("/api/v1/models/steady/versions/1.0.0/files").json["files"]
    assert sorted(f["path"] for f in listing) == sorted(e.path for e in list_package(root))
    for f in listing:
        reply = api.get(f["url"])
        assert reply.status_code == 200 and reply.data == (root / f["path"]).read_bytes(), f["path"]


def assert_clear_507(reply, blobs: Path) -> str:
    assert reply.status_code == 507, reply.json
    error = reply.json["error"]
    assert error.startswith("The hub's disk is full: ") and str(blobs) in error, error
    assert f"{free_bytes(blobs):,} bytes free" in error and "Free space on that disk" in error, error
    assert "AIDHUB_MIN_FREE_DISK" in error, error
    return error


# --- the tests ------------------------------------------------------------------------------------


def test_a_part_that_fills_the_disk_is_cut_back_and_the_same_part_resumes_once_there_is_room(
    api, small_disk, tmp_path
):
    blobs, v1 = small_disk, publish_v1(api, tmp_path)
    stored_before = blob_files(blobs)
    data = random_bytes(8 * MiB)
    sha, size = hashlib.sha256(data).hexdigest(), len(data)
    url = f"/api/v1/blobs/{sha}?size={size}&offset="
    assert api.patch(url + "0", data=data[: 3 * MiB]).json["offset"] == 3 * MiB
    free_then = free_bytes(blobs)

    body = FillingStream(data[3 * MiB :], 2 * MiB, blobs)  # the other writer fills the disk mid-part
    reply = api.patch(
        url + str(3 * MiB), input_stream=body, content_length=body.length,
        content_type="application/octet-stream",
    )  # fmt: skip
    error = assert_clear_507(reply, blobs)
    assert "Nothing of this part was kept: the hub holds the first 3,145,728 bytes of the file" in error
    assert (blobs / "uploads" / sha).stat().st_size == 3 * MiB
    assert blob_files(blobs) == stored_before  # no blob under its sha256
    assert free_bytes(blobs) == free_then - body.taken  # what the part had written is free again
    asked = api.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": size}]})
    assert asked.status_code == 507  # the disk is still full: the check says so before a byte is sent

    (blobs / FILLER).unlink()  # the other writer gives its space back: the same part again
    asked = api.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": size}]})
    assert asked.json["missing"] == [{"sha256": sha, "size": size, "offset": 3 * MiB}]
    done = api.patch(url + str(3 * MiB), data=data[3 * MiB :])
    assert done.json == {"sha256": sha, "size": size, "offset": size, "complete": True}
    assert blob_files(blobs) == {**stored_before, sha: size}
    assert hashlib.sha256((blobs / "sha256" / sha[:2] / sha).read_bytes()).hexdigest() == sha
    assert leftovers(blobs) == [f"{sha}.done"]  # the marker that cleans it up if no version takes it
    assert_reads_back_whole(api, v1)


def test_an_archive_that_fills_the_disk_stores_nothing_and_loses_nothing_stored_before(
    api, small_disk, tmp_path
):
    blobs, v1 = small_disk, publish_v1(api, tmp_path)
    root = python_package(tmp_path / "v2", "steady", version="2.0.0")
    (root / "notes.txt").write_bytes(random_bytes(64 * 1024))  # sent by parts, no version holds it yet
    notes = next(e for e in list_package(root) if e.path == "notes.txt")
    assert api.patch(
        f"/api/v1/blobs/{notes.sha256}?offset=0&size={notes.size}", data=(root / "notes.txt").read_bytes()
    ).json["complete"]
    (root / "weights.bin").write_bytes(random_bytes(6 * MiB))
    body = pack(root)
    stored_before, left_before, free_then = blob_files(blobs), leftovers(blobs), free_bytes(blobs)

    stream = FillingStream(body, len(body) // 2, blobs)  # halfway through weights.bin
    reply = api.post(
        "/api/v1/models", input_stream=stream, content_length=stream.length, content_type="application/gzip"
    )
    assert "Nothing of it was kept" in assert_clear_507(reply, blobs)
    assert VersionRow.select().count() == 1
    assert blob_files(blobs) == stored_before  # aid.yaml, stored before the disk filled, is gone again
    assert leftovers(blobs) == left_before  # no temp file; notes.txt's marker stays
    assert free_bytes(blobs) == free_then - stream.taken

    (blobs / FILLER).unlink()
    again = api.post("/api/v1/models", data=body, content_type="application/gzip")
    assert again.status_code == 201 and again.json["version"] == "2.0.0", again.json
    assert_reads_back_whole(api, v1)


def test_a_package_folder_that_fills_its_own_disk_is_a_507_and_nothing_is_left_half_laid_out(
    api, small_disk, tmp_path
):
    """Package folders are hard links into the blob store, or copies where the two are on different
    disks: a copy that fills the disk of the package folders is refused like a blob."""
    root = python_package(tmp_path / "v1", "steady")
    (root / "weights.bin").write_bytes(random_bytes(2 * MiB))
    files, packages = send_files(api, root), tmp_path / "home" / "packages"
    with tmpfs(packages, 1 * MiB):
        reply = api.post("/api/v1/models", json={"files": files})
        assert reply.status_code == 507, reply.json
        error = reply.json["error"]
        assert error.startswith(f"The hub's disk is full: {packages} has 1,048,576 bytes free"), error
        assert "too few to lay out the package's" in error and "Free space on that disk" in error
        assert list(packages.iterdir()) == []  # no half-copied folder
        assert VersionRow.select().count() == 0
    assert {f["sha256"] for f in files} <= set(blob_files(small_disk))  # the blobs stay for the retry
    again = api.post("/api/v1/models", json={"files": files})
    assert again.status_code == 201, again.json
    assert_reads_back_whole(api, root)


class FillingProxy:
    """A TCP proxy in front of a real hub that, once `at` bytes have gone to the hub, waits until the
    hub has written all it got of the part file `part` beyond `past` bytes (the hub's free-disk check
    of that part is behind it), fills the disk of `folder` (take_all_space), then forwards the rest."""

    def __init__(self, port: int, at: int, part: Path, past: int, folder: Path):
        self.port, self.at, self.part, self.past, self.folder = port, at, part, past, folder
        self.sent, self.taken, self.lock = 0, 0, threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_hub: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                if to_hub:
                    self._maybe_fill(len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):  # shut down, not only closed: that wakes the other direction's recv
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _maybe_fill(self, more: int) -> None:
        with self.lock:
            self.sent += more
            if self.taken or self.sent < self.at:
                return
            deadline, sizes = time.monotonic() + 30, [-1, -2]
            while sizes[-1] <= self.past or sizes[-1] != sizes[-2]:  # growing: the hub still writes
                assert time.monotonic() < deadline, f"the hub wrote no more than {sizes[-1]} bytes"
                time.sleep(0.05)
                sizes.append(self.part.stat().st_size if self.part.exists() else 0)
            self.taken = take_all_space(self.folder)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def served_hub(small_disk, tmp_path):
    """`aid serve` with the small disk as its blob folder and its database off it."""
    env = {"AIDHUB_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db", "AIDHUB_MIN_FREE_DISK": "0"}
    hub = HubProcess(tmp_path / "home", extra_env=env).start()
    yield hub
    hub.stop()


def aid_publish(url: str, root: Path, env: dict) -> subprocess.CompletedProcess:
    command = [AID, "--hub", url, "publish", str(root)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**env, "AIDHUB_PART_SIZE": "4Mi"}
    )


def test_aid_publish_says_the_disk_is_full_exits_2_and_resumes_once_there_is_room(
    served_hub, small_disk, tmp_path
):
    blobs = small_disk
    root = python_package(tmp_path / "big", "big")
    (root / "weights.bin").write_bytes(random_bytes(12 * MiB))
    sha = hashlib.sha256((root / "weights.bin").read_bytes()).hexdigest()
    part = blobs / "uploads" / sha
    proxy = FillingProxy(served_hub.port, 6 * MiB, part, 4 * MiB, blobs)  # in the 2nd part of 4 MiB
    try:
        done = aid_publish(proxy.url, root, served_hub.env)
    finally:
        proxy.close()
    assert proxy.taken and done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: The hub's disk is full: {blobs} has "), done.stderr
    assert "Nothing of this part was kept: the hub holds the first 4,194,304 bytes" in done.stderr
    assert "Traceback" not in done.stderr
    assert part.stat().st_size == 4 * MiB and not (blobs / "sha256" / sha[:2] / sha).exists()

    (blobs / FILLER).unlink()
    again = aid_publish(served_hub.url, root, served_hub.env)
    assert again.returncode == 0, again.stderr
    assert "Resuming weights.bin at 4.2 MB" in again.stdout and "Published big@1.0.0" in again.stdout
    assert hashlib.sha256((blobs / "sha256" / sha[:2] / sha).read_bytes()).hexdigest() == sha

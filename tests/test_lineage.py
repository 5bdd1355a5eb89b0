"""Lineage (issue 13, item 5): `parent:` and `trained_on:` in aid.yaml, their format checked by the
manifest (400 listing each field) and their existence by the hub at publish (422 naming the value),
stored with the version and shown in its API JSON with `children` and each snapshot's figures.

On a real Hub per test (SQLite file, then PostgreSQL; conftest.py: hub, publish, client). Snapshots
are real exports (a CSV of logged predictions), except where a test needs digests it chooses."""

from __future__ import annotations

import itertools

import pytest

from hub.auth import Principal
from hub.errors import BadInput, Forbidden, Invalid
from hub.lineage import MAX_DEPTH, nested
from monitor.datasets import save_snapshot
from registry.lineage import check_lineage
from registry.models import ModelRow, VersionRow
from tests.demo_package import write_package
from tests.packages import archive
from tests.test_datasets import pair

ALICE = Principal("alice", frozenset({"publish", "read"}))
BOB = Principal("bob", frozenset({"publish", "read"}))
FOLDERS = itertools.count()


def problems_of(data: dict) -> tuple[dict, list[tuple[str, str]]]:
    found: list[tuple[str, str]] = []
    return check_lineage(data, lambda path, message: found.append((path, message))), found


def snapshot(hub) -> dict:
    """A real export of demo-adder 1.0.0's log (one prediction): the snapshot."""
    pair(hub, [1.0, 2.0])
    made, created = hub.export_dataset("demo-adder", "1.0.0", fmt="csv")
    assert created and made["rows"] == 1
    return made


def publish_as(hub, tmp_path, principal=None, **manifest) -> dict:
    """The demo package with these aid.yaml fields, published by `principal` (None: the hub)."""
    folder = tmp_path / f"as-{next(FOLDERS)}"
    return hub.publish(archive(write_package(folder, **manifest)), principal=principal)


# --- the format, in the manifest ----------------------------------------------------------------


def test_lineage_fields_are_normalised_one_digest_or_a_list():
    assert problems_of({}) == ({"trained_on": (), "parent": None}, [])
    one = problems_of({"version": "1.1.0", "parent": "1.0.0", "trained_on": " SHA256:ABCDEF01 "})
    assert one == ({"trained_on": ("sha256:abcdef01",), "parent": "1.0.0"}, [])
    full = "ab" * 32
    assert problems_of({"trained_on": [full, f"sha256:{full[:12]}"]})[0]["trained_on"] == (
        f"sha256:{full}",
        f"sha256:{full[:12]}",
    )


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"version": "1.0.0", "parent": "1.0.0"}, "parent",
         "'1.0.0' is this version itself; name the version it was retrained from"),
        ({"parent": "latest"}, "parent",
         "'latest' is not valid: use the version number of this model it was retrained from, e.g. 1.0.0"),
        ({"parent": "other-model@1.0.0"}, "parent",
         "'other-model@1.0.0' names another model; name a version of this one: the version number of "
         "this model it was retrained from, e.g. 1.0.0"),
        ({"parent": ["1.0.0"]}, "parent",
         "['1.0.0'] is not valid: use the version number of this model it was retrained from, e.g. 1.0.0"),
        ({"trained_on": "md5:0123456789"}, "trained_on",
         "'md5:0123456789' is not valid: use a snapshot digest, sha256:<hex> (8 to 64 hex digits), as "
         "'aid dataset list NAME' shows"),
        ({"trained_on": ["sha256:abc"]}, "trained_on[0]",
         "'sha256:abc' is not valid: use a snapshot digest, sha256:<hex> (8 to 64 hex digits), as "
         "'aid dataset list NAME' shows"),
        ({"trained_on": ["abcdef01", 12345678]}, "trained_on[1]",
         "12345678 is not valid: use a snapshot digest, sha256:<hex> (8 to 64 hex digits), as "
         "'aid dataset list NAME' shows"),
        ({"trained_on": ["abcdef01", "sha256:ABCDEF01"]}, "trained_on[1]",
         "'sha256:abcdef01' is named twice; name each snapshot once"),
        ({"trained_on": {"a": 1}}, "trained_on",
         "must be one digest or a list of at most 100: [sha256:<hex>, ...]"),
        ({"trained_on": ["abcdef01"] * 101}, "trained_on",
         "must be one digest or a list of at most 100: [sha256:<hex>, ...]"),
    ],
)  # fmt: skip
def test_bad_lineage_fields_name_the_field_the_value_and_the_fix(data, path, message):
    assert problems_of(data)[1] == [(path, message)]


def test_a_megabyte_in_a_lineage_field_is_quoted_short():
    _, found = problems_of({"parent": "x" * 1_000_000})
    assert len(found[0][1]) < 200 and found[0][1].startswith("'xxxx") and "..." in found[0][1]


def test_a_bad_format_refuses_the_package_listing_every_problem(hub, publish):
    with pytest.raises(Invalid) as refused:
        publish(version="1.1.0", parent="1.1.0", trained_on=["nope"])
    assert refused.value.status == 400
    assert "parent: '1.1.0' is this version itself; name the version it was retrained from" in (
        refused.value.errors
    )
    assert any(e.startswith("trained_on[0]: 'nope' is not valid") for e in refused.value.errors)


# --- existence, at publish ----------------------------------------------------------------------


def test_parent_and_snapshot_are_stored_in_full_and_shown_with_children(hub, publish, client):
    publish()
    made = snapshot(hub)
    short = made["digest"][:15]  # sha256: and 8 hex digits
    reply = publish(version="1.1.0", parent="1.0.0", trained_on=short)
    assert (reply["created"], reply["parent"], reply["children"]) == (True, "1.0.0", [])
    child = client.get("/api/v1/models/demo-adder/versions/1.1.0").get_json()
    assert child["manifest"]["trained_on"] == [made["digest"]] and child["manifest"]["parent"] == "1.0.0"
    assert (child["parent"], child["children"]) == ("1.0.0", [])
    assert child["trained_on"] == [
        {"digest": made["digest"], "model": "demo-adder", "version": "1.0.0", "format": "csv", "rows": 1,
         "labels": 0, "created_at": made["created_at"], "url": f"/api/v1/datasets/{made['digest']}"}
    ]  # fmt: skip
    parent = client.get("/api/v1/models/demo-adder/versions/1.0.0").get_json()
    assert (parent["parent"], parent["children"], parent["trained_on"]) == (None, ["1.1.0"], [])


def test_an_unknown_parent_is_422_naming_it_and_nothing_is_stored(hub, publish):
    publish()
    publish(version="1.1.0")
    with pytest.raises(BadInput) as refused:
        publish(version="2.0.0", parent="1.9.0")
    message = (
        "parent: '1.9.0' is not a published version of 'demo-adder'. Its versions: 1.0.0, 1.1.0. Publish "
        "the parent first, or name one of those (or leave 'parent' out for a first version)."
    )
    assert refused.value.status == 422 and refused.value.errors == [message]
    assert refused.value.message == f"aid.yaml names what the hub does not hold: {message}"
    assert [v.version for v in VersionRow.select()] == ["1.0.0", "1.1.0"]


def test_a_first_version_naming_a_parent_is_422(hub, publish):
    with pytest.raises(BadInput) as refused:
        publish(parent="0.9.0")
    assert "'demo-adder' has no version yet." in refused.value.message
    assert not ModelRow.select().exists()


def test_an_unknown_digest_is_422_naming_it_and_how_to_find_one(hub, publish):
    publish()
    snapshot(hub)
    with pytest.raises(BadInput) as refused:
        publish(version="1.1.0", trained_on=["sha256:00000000", "sha256:" + "f" * 64])
    said = (
        "names no dataset snapshot of yours on this hub. 'aid dataset list NAME' lists a model's "
        "snapshots; 'aid dataset export NAME' makes one."
    )
    assert refused.value.errors == [
        f"trained_on[0]: 'sha256:00000000' {said}",
        f"trained_on[1]: 'sha256:{'f' * 64}' {said}",
    ]
    assert refused.value.status == 422


def test_a_prefix_of_several_snapshots_is_422_asking_for_more(hub, publish, tmp_path):
    publish()
    version_id = VersionRow.get().id
    fields = {"format": "csv", "rows": 0, "labels": 0, "size": 1, "columns": [], "filter": {}}
    for digest in ("abcdef01" + "1" * 56, "abcdef01" + "2" * 56):
        save_snapshot(version_id, digest, **fields)
    with pytest.raises(BadInput) as refused:
        publish(version="1.1.0", trained_on="sha256:abcdef01")
    assert refused.value.errors == [
        "trained_on[0]: 'sha256:abcdef01' is the start of several snapshots (sha256:abcdef0111111111, "
        "sha256:abcdef0122222222); give more of its digest."
    ]
    assert publish_as(hub, tmp_path, version="1.1.0", trained_on="sha256:abcdef012")["trained_on"][0][
        "digest"
    ] == ("sha256:abcdef01" + "2" * 56)


def test_someone_elses_snapshot_is_answered_as_unknown(hub, tmp_path):
    publish_as(hub, tmp_path, ALICE)
    made = snapshot(hub)
    with pytest.raises(BadInput) as refused:
        publish_as(hub, tmp_path, BOB, name="bob-adder", trained_on=made["digest"])
    assert "names no dataset snapshot of yours on this hub" in refused.value.message
    mine = publish_as(hub, tmp_path, ALICE, name="alice-adder", trained_on=made["digest"])
    assert mine["trained_on"][0]["rows"] == 1
    with pytest.raises(Forbidden):  # the owner check comes first: the lineage of a model not theirs
        publish_as(hub, tmp_path, BOB, version="1.1.0", parent="9.9.9")


def test_the_same_files_again_are_still_the_same_version(hub, publish, tmp_path):
    publish()
    made = snapshot(hub)
    first = publish(version="1.1.0", parent="1.0.0", trained_on=made["digest"])
    again = publish_as(hub, tmp_path, version="1.1.0", parent="1.0.0", trained_on=made["digest"])
    assert (first["created"], again["created"], again["digest"]) == (True, False, first["digest"])


# --- the tree -------------------------------------------------------------------------------------


def node(version: str, parent: str | None, children: list[str]) -> dict:
    return {"version": version, "parent": parent, "children": children, "trained_on": []}


def test_nesting_stops_at_max_depth_and_keeps_every_version_in_order():
    chain = [f"1.{i}.0" for i in range(MAX_DEPTH + 4)]
    nodes = {v: node(v, chain[i - 1] if i else None, chain[i + 1 : i + 2]) for i, v in enumerate(chain)}
    nodes["2.0.0"] = node("2.0.0", "0.1.0", [])  # its parent is not on the hub: a root
    tree = nested(nodes, [*chain, "2.0.0"])
    assert [n["version"] for n in tree] == ["1.0.0", "2.0.0"]
    deepest = tree[0]
    for _ in range(MAX_DEPTH - 1):
        (deepest,) = deepest["children"]
    assert deepest["depth"] == MAX_DEPTH - 1
    assert [n["version"] for n in deepest["children"]] == chain[MAX_DEPTH:]
    assert [n["parent"] for n in deepest["children"]] == chain[MAX_DEPTH - 1 : -1]
    assert all(n["children"] == [] for n in deepest["children"])

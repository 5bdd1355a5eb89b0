"""The model page's Lineage section (issue 13, item 5): the tree of versions (parent -> children) with,
per version, the snapshots it was trained on and its all-time numbers side by side, in the page's JSON
and its HTML (nested lists, no script); hostile values stay text.

On a real Hub per test (SQLite file, then PostgreSQL) through the Flask test client; predictions are
written to the real log and its rollups, feedback through the hub, the snapshot is a real export."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from hub.errors import Invalid
from monitor.scorecard import wilson_interval
from registry.models import VersionRow
from tests.page_reading import Elements, get, text_of
from tests.test_datasets import pair

JSON = {"Accept": "application/json"}
HOSTILE = "<script>alert('lineage')</script>"


class ListNesting(HTMLParser):
    """Which lineage item (its data-version) each lineage item sits in: version -> parent's, or None."""

    def __init__(self, page: str):
        super().__init__()
        self.stack: list[str | None] = []
        self.inside: dict[str, str | None] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "li":
            version = dict(attrs).get("data-version")
            if version is not None:
                self.inside[version] = next((v for v in reversed(self.stack) if v), None)
            self.stack.append(version)

    def handle_endtag(self, tag):
        if tag == "li":
            self.stack.pop()


@pytest.fixture
def family(hub, publish):
    """demo-adder 1.0.0 with 4 predictions (3 judged right, 1 wrong) and a snapshot of them; 1.1.0
    retrained from it on that snapshot, 1.2.0 from 1.1.0, 2.0.0 from 1.0.0, and 3.0.0 on its own."""
    publish()
    ids = [pair(hub, [float(i), 0.0]) for i in range(4)]
    hub.predlog.flush()
    for pid, right in zip(ids, (True, True, True, False), strict=True):
        hub.feedback(pid, {"correct": right, "label": "sum"})
    made, _ = hub.export_dataset("demo-adder", "1.0.0", fmt="csv")
    publish(version="1.1.0", parent="1.0.0", trained_on=[made["digest"][:20]])
    publish(version="1.2.0", parent="1.1.0")
    publish(version="2.0.0", parent="1.0.0")
    publish(version="3.0.0")
    return made


def test_the_page_json_holds_the_tree_with_datasets_and_numbers(hub, client, family):
    tree = client.get("/models/demo-adder", headers=JSON).get_json()["lineage"]
    assert [n["version"] for n in tree] == ["1.0.0", "3.0.0"]
    first = tree[0]
    assert [n["version"] for n in first["children"]] == ["1.1.0", "2.0.0"]
    assert [n["version"] for n in first["children"][0]["children"]] == ["1.2.0"]
    assert [(n["parent"], n["depth"]) for n in first["children"]] == [("1.0.0", 1), ("1.0.0", 1)]
    retrained = first["children"][0]
    assert retrained["trained_on"] == [
        {"digest": family["digest"], "model": "demo-adder", "version": "1.0.0", "format": "csv", "rows": 4,
         "labels": 4, "created_at": family["created_at"], "url": f"/api/v1/datasets/{family['digest']}"}
    ]  # fmt: skip
    low, high = wilson_interval(3, 4)
    p95 = hub.scorecard("demo-adder", "1.0.0", window="all")["latency_ms"]["p95"]
    assert p95 is not None
    assert first["numbers"] == {
        "requests": 4, "error_rate": 0.0, "p95_ms": p95, "feedback": 4, "accuracy": 0.75,
        "accuracy_low": round(low, 4), "accuracy_high": round(high, 4),
    }  # fmt: skip
    assert retrained["numbers"]["requests"] == 0 and retrained["numbers"]["accuracy"] is None


def test_the_page_shows_the_tree_as_nested_lists_with_numbers_side_by_side(client, family):
    page = get(client, "/models/demo-adder?version=1.1.0")
    assert ListNesting(page).inside == {
        "1.0.0": None, "1.1.0": "1.0.0", "1.2.0": "1.1.0", "2.0.0": "1.0.0", "3.0.0": None,
    }  # fmt: skip
    lineage = page[page.index('<section id="lineage">') : page.index('<section id="builds">')]
    text = text_of(lineage)
    assert "1.0.0 Trained on: no snapshot named Accuracy 75.0% 95% CI" in text
    assert "Requests 4 Error rate 0.0%" in text
    assert (
        f"1.1.0 retrained from 1.0.0 (this page's version) Trained on: {family['digest'][:19]} 4 rows, "
        "4 labelled" in text
    )
    assert "3.0.0 Trained on: no snapshot named Accuracy — no judged predictions Requests 0" in text
    links = Elements(lineage).find("a", href=family["url"])
    assert links == [{"href": family["url"], "download": None}]
    assert not Elements(lineage).find("script") and 'href="#lineage"' in page
    assert [a["href"] for a in Elements(lineage).find("a", **{"aria-current": "page"})] == [
        "/models/demo-adder?version=1.1.0#lineage"
    ]


def test_download_links_are_for_who_may_read_snapshots_only(app, family):
    anonymous = get(app.test_client(), "/models/demo-adder")
    lineage = anonymous[anonymous.index('<section id="lineage">') :]
    assert family["digest"][:19] in lineage and "4 rows, 4 labelled" in text_of(lineage)
    assert f'href="{family["url"]}"' not in anonymous


def test_a_snapshot_gone_from_the_hub_is_shown_as_gone(hub, client, family):
    from monitor.datasets import DatasetSnapshot

    DatasetSnapshot.delete().execute()
    version = client.get("/api/v1/models/demo-adder/versions/1.1.0").get_json()
    assert version["trained_on"][0] == {
        "digest": family["digest"], "model": None, "version": None, "format": None, "rows": None,
        "labels": None, "created_at": None, "url": None,
    }  # fmt: skip
    assert "no longer on the hub" in text_of(get(client, "/models/demo-adder"))


def test_hostile_lineage_values_are_refused_at_publish_and_escaped_on_the_page(hub, publish, client):
    publish()
    for field, value in (("parent", HOSTILE), ("trained_on", [HOSTILE])):
        with pytest.raises(Invalid) as refused:
            publish(version=f"1.{len(field)}.0", **{field: value})
        assert refused.value.status == 400
        assert [e for e in refused.value.errors if e.startswith(field)] == [
            f"{field}{'[0]' if field == 'trained_on' else ''}: {HOSTILE!r} is not valid: use "
            + ("the version number of this model it was retrained from, e.g. 1.0.0" if field == "parent"
               else "a snapshot digest, sha256:<hex> (8 to 64 hex digits), as 'aid dataset list NAME' shows")
        ]  # fmt: skip
    # A version stored before these checks (or by hand) holding hostile values is still only text.
    row = VersionRow.get(VersionRow.version == "1.0.0")
    row.manifest = {**row.manifest, "parent": HOSTILE, "trained_on": [f"sha256:{HOSTILE}"]}
    row.save()
    page = get(client, "/models/demo-adder")
    assert HOSTILE not in page and "&lt;script&gt;alert(" in page
    assert not [e for e in Elements(page).find("script") if "src" not in e]
    data = client.get("/models/demo-adder.json").get_json()
    assert data["lineage"][0]["parent"] == HOSTILE
    assert data["lineage"][0]["trained_on"][0]["digest"] == f"sha256:{HOSTILE}"

"""Dataset snapshots through the Hub, on SQLite and PostgreSQL: what a row holds (flattened inputs, outputs,
the feedback joined), the filters, capped payloads, the empty export, content addressing and
immutability, reference data that a new version publishes with, and the errors for bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from hub.auth import Principal
from hub.errors import Invalid, NotFound
from monitor.datasets import predictions
from monitor.predlog import PredictionRecord
from tests.demo_package import write_package
from tests.packages import archive

HEADER = (
    "prediction_id,created_at,item,x.0,x.1,output.y.0,output.y.1,"
    "feedback.label,feedback.correct,feedback.rating,truncated"
)
ADMIN = Principal("admin", frozenset({"admin"}))
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def stamp(at: datetime) -> str:
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def log(hub, inputs, outputs, at: datetime = T0, **fields) -> str:
    """One prediction of demo-adder 1.0.0 in the hub's log; its id."""
    version = hub.catalog.resolve("demo-adder", "1.0.0")
    record = PredictionRecord(version.id, "demo-adder", "1.0.0", 1.5, inputs=inputs, outputs=outputs,
                              created_at=at, **fields)  # fmt: skip
    return hub.predlog.record(record)


def pair(hub, x: list[float], at: datetime = T0) -> str:
    return log(hub, {"x": [x]}, {"y": [[v + 1 for v in x]]}, at)


def file_of(hub, snapshot: dict) -> bytes:
    return hub.dataset_blobs.path(snapshot["digest"].removeprefix("sha256:")).read_bytes()


def lines(hub, snapshot: dict) -> list[str]:
    return file_of(hub, snapshot).decode().splitlines()


@pytest.fixture
def demo(hub, publish):
    publish()
    return hub


def test_csv_export_has_flattened_inputs_outputs_and_the_joined_feedback(demo):
    first, second = pair(demo, [1.0, 2.0]), pair(demo, [3.0, 4.0], T0 + timedelta(seconds=1))
    demo.feedback(first, {"label": "small", "rating": 4}, client="ann")
    demo.feedback(first, {"correct": False}, client="bob")  # a later one: each field's latest value
    snapshot, created = demo.export_dataset("demo-adder", fmt="csv")
    assert created and (snapshot["rows"], snapshot["labels"], snapshot["format"]) == (2, 1, "csv")
    assert lines(demo, snapshot) == [
        HEADER,
        f"{first},{stamp(T0)},0,1.0,2.0,2.0,3.0,small,false,4,false",
        f"{second},{stamp(T0 + timedelta(seconds=1))},0,3.0,4.0,4.0,5.0,,,,false",
    ]
    assert [c["name"] for c in snapshot["columns"]] == HEADER.split(",")
    assert snapshot["filter"] == {"version": "1.0.0", "since": "all", "from": None, "labelled_only": False}


def test_parquet_export_is_typed_and_holds_the_same_rows(demo):
    first = pair(demo, [1.0, 2.0])
    demo.feedback(first, {"label": "small", "correct": True})
    snapshot, _ = demo.export_dataset("demo-adder", "1.0.0")
    table = pq.read_table(demo.dataset_blobs.path(snapshot["digest"][7:]))
    assert table.schema.names == HEADER.split(",")
    assert [str(table.schema.field(n).type) for n in ("created_at", "item", "x.0", "feedback.correct")] == [
        "timestamp[us, tz=UTC]", "int64", "double", "bool",
    ]  # fmt: skip
    (row,) = table.to_pylist()
    assert row == {
        "prediction_id": first, "created_at": T0, "item": 0, "x.0": 1.0, "x.1": 2.0, "output.y.0": 2.0,
        "output.y.1": 3.0, "feedback.label": "small", "feedback.correct": True, "feedback.rating": None,
        "truncated": False,
    }  # fmt: skip


def test_a_batched_call_is_one_row_per_item_sharing_its_id(demo):
    both = log(demo, {"x": [[1.0, 2.0], [3.0, 4.0]]}, {"y": [[2.0, 3.0], [4.0, 5.0]]})
    snapshot, _ = demo.export_dataset("demo-adder", fmt="csv")
    assert lines(demo, snapshot)[1:] == [
        f"{both},{stamp(T0)},0,1.0,2.0,2.0,3.0,,,,false",
        f"{both},{stamp(T0)},1,3.0,4.0,4.0,5.0,,,,false",
    ]


def test_labelled_only_and_since_filter_the_rows(demo):
    old = pair(demo, [1.0, 1.0], T0 - timedelta(days=3))
    recent = pair(demo, [2.0, 2.0])
    pair(demo, [3.0, 3.0])  # recent, never labelled
    demo.feedback(old, {"label": "a"})
    demo.feedback(recent, {"label": "b"})
    labelled, _ = demo.export_dataset("demo-adder", labelled_only=True, fmt="csv")
    assert [line.split(",")[0] for line in lines(demo, labelled)[1:]] == [old, recent]
    recent_labelled, _ = demo.export_dataset("demo-adder", since="1d", labelled_only=True, fmt="csv")
    assert [line.split(",")[0] for line in lines(demo, recent_labelled)[1:]] == [recent]
    assert recent_labelled["filter"]["since"] == "1d" and recent_labelled["filter"]["labelled_only"] is True
    everything_recent, _ = demo.export_dataset("demo-adder", since="2d", fmt="jsonl")
    assert everything_recent["rows"] == 2 and everything_recent["labels"] == 1


def test_a_capped_payload_exports_empty_cells_marked_truncated_and_failed_calls_are_left_out(demo):
    big = {"x": [[float(i), 0.5] for i in range(2000)]}  # over the log's 16 KiB cap
    capped = log(demo, big, {"y": [[5.0, 6.0]]})
    log(demo, {"x": [[1.0, 2.0]]}, None, status="error", error="boom")
    snapshot, _ = demo.export_dataset("demo-adder", fmt="csv")
    assert lines(demo, snapshot)[1:] == [f"{capped},{stamp(T0)},0,,,5.0,6.0,,,,true"]


def test_a_version_without_predictions_exports_an_empty_snapshot_with_its_schema(demo):
    snapshot, created = demo.export_dataset("demo-adder")
    assert created and (snapshot["rows"], snapshot["labels"]) == (0, 0)
    table = pq.read_table(demo.dataset_blobs.path(snapshot["digest"][7:]))
    assert (table.num_rows, table.schema.names) == (0, HEADER.split(","))
    as_csv, _ = demo.export_dataset("demo-adder", fmt="csv")
    assert lines(demo, as_csv) == [HEADER]


def test_same_content_same_digest_and_a_snapshot_never_changes(demo):
    pair(demo, [1.0, 2.0])
    first, created = demo.export_dataset("demo-adder", fmt="csv")
    again, created_again = demo.export_dataset("demo-adder", fmt="csv", since="30d")
    assert (created, created_again, again["digest"], again["filter"]) == (True, False, first["digest"],
                                                                         first["filter"])  # fmt: skip
    bytes_before = file_of(demo, first)
    pair(demo, [3.0, 4.0], T0 + timedelta(seconds=1))
    later, created_later = demo.export_dataset("demo-adder", fmt="csv")
    assert created_later and later["digest"] != first["digest"] and later["rows"] == 2
    path = demo.dataset_blobs.path(first["digest"][7:])
    assert (
        file_of(demo, first) == bytes_before
        and "sha256:" + hashlib.sha256(bytes_before).hexdigest() == (first["digest"])
    )
    assert not os.access(path, os.W_OK) or os.geteuid() == 0
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert path.is_relative_to(demo.config.home / "datasets")  # apart from the package blobs' clean-up
    parquet, _ = demo.export_dataset("demo-adder")
    parquet_again, created_again = demo.export_dataset("demo-adder")
    assert (parquet_again["digest"], created_again) == (parquet["digest"], False)
    listed = demo.datasets("demo-adder")["datasets"]
    assert [s["digest"] for s in listed] == [parquet["digest"], later["digest"], first["digest"]]


def test_reference_csv_of_a_snapshot_is_the_reference_data_of_a_new_version(demo, tmp_path):
    pair(demo, [1.0, 2.0])
    pair(demo, [3.5, 4.0], T0 + timedelta(seconds=1))
    log(demo, {"x": [[float(i), 0.5] for i in range(2000)]}, None, T0 + timedelta(seconds=2))  # capped
    snapshot, _ = demo.export_dataset("demo-adder", fmt="parquet")
    found, pieces = demo.dataset_reference(snapshot["digest"][:15], ADMIN)
    text = "".join(pieces)
    assert found["digest"] == snapshot["digest"]
    assert text.splitlines() == ["x.0,x.1", "1.0,2.0", "3.5,4.0"]
    root = write_package(tmp_path / "next", version="1.1.0", reference_data="reference.csv")
    (root / "reference.csv").write_text(text)
    demo.publish(archive(root))
    assert demo.reference_columns("demo-adder", "1.1.0") == ["x.0", "x.1"]


def test_bad_format_since_name_and_digest_say_what_to_give(demo):
    with pytest.raises(Invalid) as bad_format:
        demo.export_dataset("demo-adder", fmt="xlsx")
    assert (
        bad_format.value.message == "format 'xlsx' is not one of parquet, csv, jsonl; e.g. --format parquet."
    )
    with pytest.raises(Invalid) as bad_since:
        demo.export_dataset("demo-adder", since="last week")
    assert bad_since.value.message == "since 'last week' is not a duration; use e.g. 90m, 24h, 7d, or all."
    with pytest.raises(NotFound):
        demo.export_dataset("no-such-model")
    with pytest.raises(Invalid) as bad_digest:
        demo.dataset_file("sha256:xyz", ADMIN)
    assert bad_digest.value.message.startswith(
        "'sha256:xyz' is not a snapshot digest; give sha256:<hex digits>"
    )
    with pytest.raises(NotFound) as unknown:
        demo.dataset_file("sha256:" + "0" * 64, ADMIN)
    assert "'aid dataset list NAME' lists a model's snapshots" in unknown.value.message


def test_another_owners_snapshot_is_not_found(demo):
    snapshot, _ = demo.export_dataset("demo-adder")
    demo.catalog.model("demo-adder").__class__.update(owner="ann").execute()
    with pytest.raises(NotFound):
        demo.dataset_file(snapshot["digest"], Principal("bob", frozenset({"publish"})))
    path, found = demo.dataset_file(snapshot["digest"], Principal("ann", frozenset({"publish"})))
    assert found["digest"] == snapshot["digest"] and path.is_file()


def test_keyset_pages_visit_each_prediction_once_when_times_are_equal(demo):
    ids = sorted(pair(demo, [float(i), 0.0]) for i in range(7))  # all at T0: the id breaks ties
    demo.predlog.flush()
    version = demo.catalog.resolve("demo-adder", "1.0.0")
    pages = list(predictions(version.id, None, False, chunk=2))
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [row[0] for page in pages for row in page] == ids


def test_jsonl_rows_are_objects_by_column(demo):
    first = pair(demo, [1.0, 2.0])
    snapshot, _ = demo.export_dataset("demo-adder", fmt="jsonl")
    (line,) = lines(demo, snapshot)
    assert line == (
        f'{{"prediction_id": "{first}", "created_at": "{stamp(T0)}", "item": 0, "x.0": 1.0, "x.1": 2.0, '
        '"output.y.0": 2.0, "output.y.1": 3.0, "feedback.label": null, "feedback.correct": null, '
        '"feedback.rating": null, "truncated": false}'
    )
    assert list(csv.reader(io.StringIO(HEADER)))[0][3] == "x.0"


def test_a_failing_export_process_is_an_error_that_names_the_cause(tmp_path):
    from hub.datasets import run_export
    from hub.errors import HubError

    job = {"database_url": f"sqlite:///{tmp_path}/none.db", "version_id": 1, "inputs": {}, "outputs": {},
           "format": "csv", "path": str(tmp_path / "missing-folder" / "out.csv")}  # fmt: skip
    with pytest.raises(HubError) as failed:
        run_export(job)
    assert failed.value.status == 500
    assert failed.value.message == (
        "The dataset export failed: FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{tmp_path}/missing-folder/out.csv'. The hub's log has the details."
    )


def test_the_web_process_does_not_load_pyarrow():
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, web.app; print('pyarrow' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (loaded.returncode, loaded.stdout) == (0, "False\n"), loaded.stderr


def test_values_the_schema_does_not_describe_are_empty_cells_never_guesses():
    from monitor.datasets import Plan

    plan = Plan.of(
        {"n": {"dtype": "int64", "shape": [-1]}, "flag": {"dtype": "bool", "shape": [-1]},
         "text": {"dtype": "string", "shape": [-1, -1]}},
        {"score": {"dtype": "float32", "shape": [-1, 2]}},
    )  # fmt: skip
    assert [c.name for c in plan.columns()][3:7] == ["n", "flag", "text", "output.score.0"]
    inputs = '{"n": [2, 1.5, 1e30, "7"], "flag": [true, "false", 0, 1], "text": [["a"], ["b", "c"], [], [1]]}'
    outputs = '{"score": [[NaN, 1], [1, "x"], [1, 2, 3], [[1], 2]]}'
    rows = plan.rows(("01X", T0, inputs, outputs, False), None)
    assert [[str(v) for v in row[3:8]] for row in rows] == [
        ["2", "True", '["a"]', "nan", "1.0"],  # NaN is a float: kept as it was logged
        ["None", "None", '["b","c"]', "1.0", "None"],
        ["None", "False", "[]", "None", "None"],  # three values where two belong: neither is kept
        ["None", "True", "[1]", "None", "2.0"],
    ]


def test_an_export_removes_temp_files_that_a_killed_export_left(demo):
    tmp = demo.dataset_blobs.tmp
    tmp.mkdir(parents=True, exist_ok=True)
    old, fresh = tmp / "upload-dataset-old", tmp / "upload-dataset-fresh"
    old.write_bytes(b"half")
    fresh.write_bytes(b"running")
    os.utime(old, (0, 0))
    demo.export_dataset("demo-adder", fmt="csv")
    assert sorted(p.name for p in tmp.iterdir()) == ["upload-dataset-fresh"]

"""`aid dataset export | list | pull` as a user meets them: real `aid` processes against a real hub (`aid
serve`, SQLite), exact terminal text, exit codes (2 for bad input, 1 for what is not there), files."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from peewee import SqliteDatabase

from monitor.tables import Feedback, Prediction
from tests.hubserver import AID, HubProcess
from tests.packages import onnx_package

AT = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0, tzinfo=None)
HEADER = (
    "prediction_id,created_at,item,x.0,x.1,output.y.0,output.y.1,"
    "feedback.label,feedback.correct,feedback.rating,truncated"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    server = HubProcess(root / "home").start()
    published = server.aid("publish", str(onnx_package(root / "doubler")))
    assert published.returncode == 0, published.stdout + published.stderr
    with SqliteDatabase(str(server.home / "hub.db")).bind_ctx([Prediction, Feedback]):
        for pid, x, at in (("01AAA", 1.0, AT), ("01BBB", 3.0, AT + timedelta(seconds=1))):
            Prediction.create(id=pid, version_id=1, model="doubler", version="1.0.0", created_at=at,
                              latency_ms=1.0, status="ok", source="hub", inputs=f'{{"x": [[{x}, 2.0]]}}',
                              outputs=f'{{"y": [[{2 * x}, 4.0]]}}')  # fmt: skip
        Feedback.create(
            prediction_id="01AAA", version_id=1, model="doubler", label="two", rating=5, created_at=AT
        )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exported(hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "doubler.csv"
    done = hub.aid("dataset", "export", "doubler@1.0.0", "--format", "csv", "-o", str(out))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    digest = "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    return out, digest, done.stdout


def test_export_writes_the_rows_and_says_the_digest(exported):
    out, digest, said = exported
    assert said == (
        f"Snapshot {digest} of doubler@1.0.0: 2 rows, 1 labelled (csv) -> {out}\n"
        f"Pull it again with 'aid dataset pull {digest}'.\n"
    )
    stamp = AT.isoformat(timespec="microseconds")
    assert out.read_text().splitlines() == [
        HEADER,
        f"01AAA,{stamp}Z,0,1.0,2.0,2.0,4.0,two,,5,false",
        f"01BBB,{(AT + timedelta(seconds=1)).isoformat(timespec='microseconds')}Z,0,3.0,2.0,6.0,4.0,,,,false",
    ]


def test_list_shows_digest_rows_labels_and_filter(hub, exported):
    _, digest, _ = exported
    done = hub.aid("dataset", "list", "doubler")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(digest[:19])]
    assert line.split()[1:6] == ["1.0.0", "csv", "2", "1", "all"]


def test_pull_as_stored_and_as_reference_data(hub, exported, tmp_path):
    out, digest, _ = exported
    pulled = hub.aid("dataset", "pull", digest[:15], "-o", str(tmp_path / "again.csv"))
    assert (pulled.returncode, pulled.stdout) == (0, f"Pulled {digest[:15]} -> {tmp_path / 'again.csv'}\n")
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()
    default = subprocess.run([AID, "--hub", hub.url, "dataset", "pull", digest, "--reference"], cwd=tmp_path,
                             capture_output=True, text=True, env=hub.env, timeout=120)  # fmt: skip
    assert default.returncode == 0, default.stderr
    assert default.stdout == (
        f"Wrote the inputs of {digest} to reference.csv; name it in aid.yaml: reference_data: reference.csv\n"
    )
    assert (tmp_path / "reference.csv").read_text().splitlines() == ["x.0,x.1", "1.0,2.0", "3.0,2.0"]
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (("export", "nope"), 1, "Error: Model 'nope' does not exist. Models: doubler.\n"),
        (("export", "doubler", "--since", "soon"), 2,
         "Error: since 'soon' is not a duration; use e.g. 90m, 24h, 7d, or all.\n"),
        (("pull", "sha256:zz"), 2,
         "Error: 'sha256:zz' is not a snapshot digest; give sha256:<hex digits> (8 or more) as "
         "'aid dataset list NAME' shows it.\n"),
        (("pull", "0123456789abcdef"), 1,
         "Error: No dataset snapshot '0123456789abcdef' of yours. 'aid dataset list NAME' lists a model's "
         "snapshots.\n"),
        (("list", "nope"), 1, "Error: Model 'nope' does not exist. Models: doubler.\n"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_and_what_is_missing_exits_1(hub, args, code, error):
    done = hub.aid("dataset", *args)
    assert (done.returncode, done.stderr) == (code, error)


def test_an_unknown_format_is_refused_before_asking_the_hub(hub):
    done = hub.aid("dataset", "export", "doubler", "--format", "xlsx")
    assert done.returncode == 2
    assert "Invalid value for '--format': 'xlsx' is not one of 'parquet', 'csv', 'jsonl'." in done.stderr

"""Drift with real Evidently on synthetic logged predictions: the shifted columns and only those."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.drift import MIN_ROWS, columns_of, compare, input_frame, output_frame, reference_frame
from monitor.driftworker import main

ROOT = Path(__file__).resolve().parent.parent
FEATURES = {"features": {"dtype": "float32", "shape": [-1, 4]}}
OUTPUTS = {
    "label": {"dtype": "int64", "shape": [-1]},
    "probabilities": {"dtype": "float32", "shape": [-1, 3]},
}
LABELS = ["setosa", "versicolor", "virginica"]
IMAGE = {"image": {"dtype": "float32", "shape": [-1, 1, 8, 8]}}
IRIS_MEAN, IRIS_STD = [5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.8, 0.8]


def iris_like(n: int, seed: int, shift=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(IRIS_MEAN, IRIS_STD, size=(n, 4)) + np.array(shift), 1)


def logged(name: str, table: np.ndarray, batch: int = 5) -> list[dict]:
    """Rows as the hub logs them: one dict per prediction, each carrying a batch."""
    return [{name: table[i : i + batch].tolist()} for i in range(0, len(table), batch)]


def flagged(result: dict) -> list[str]:
    return [c["column"] for c in result["columns"] if c["drifted"]]


def test_shifted_columns_and_only_those_are_flagged():
    reference = input_frame(logged("features", iris_like(500, seed=1)), FEATURES)
    rows = logged("features", iris_like(500, seed=2, shift=(0.0, 0.5, 1.5, 0.0)))
    current = input_frame(rows + [{"features": [[1, 2]]}, {"_truncated": True, "bytes": 9000}], FEATURES)
    result = compare(reference, current, html=False)
    assert list(reference.columns) == ["features.0", "features.1", "features.2", "features.3"]
    assert flagged(result) == ["features.1", "features.2"]
    assert (result["share"], result["drifted"]) == (0.5, True)
    assert result["rows"] == {"reference": 500, "current": 500}
    assert result["skipped"] == {"reference": 0, "current": 2}
    tests = {(c["method"], c["threshold"], c["note"]) for c in result["columns"]}
    assert tests == {("K-S p_value", 0.05, "")}
    assert result["html"] is None


def test_unshifted_window_is_not_drift():
    reference = input_frame(logged("features", iris_like(500, seed=1)), FEATURES)
    current = input_frame(logged("features", iris_like(500, seed=2)), FEATURES)  # the window above, unshifted
    result = compare(reference, current, html=False)
    assert (flagged(result), result["share"], result["drifted"]) == ([], 0.0, False)


def predicted(labels: list[int]) -> list[dict]:
    probabilities = [[0.8 if i == label else 0.1 for i in range(3)] for label in labels]
    batches = range(0, len(labels), 4)
    return [{"label": labels[i : i + 4], "probabilities": probabilities[i : i + 4]} for i in batches]


def test_label_output_drift_is_flagged_on_label_names():
    reference = output_frame(predicted([0, 1, 2] * 100), OUTPUTS, LABELS)
    current = output_frame(predicted([2, 2, 2, 1] * 75), OUTPUTS, LABELS)
    assert list(reference.columns) == ["label", "probabilities.0", "probabilities.1", "probabilities.2"]
    assert reference["label"].value_counts().to_dict() == {"setosa": 100, "versicolor": 100, "virginica": 100}
    result = compare(reference, current, html=False, kind="outputs")
    label = result["columns"][0]
    assert (label["column"], label["method"], label["drifted"]) == ("label", "chi-square p_value", True)
    assert label["score"] < 0.05


def images(n: int, seed: int, brightness: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(2.0, 2.0, size=(n, 1, 8, 8)) + brightness, 0, 16)


def test_image_input_is_summarised_and_a_brightness_shift_is_flagged_on_the_mean():
    reference = input_frame(logged("image", images(400, seed=1)), IMAGE)
    current = input_frame(logged("image", images(400, seed=2, brightness=2.0)), IMAGE)
    names = ["image.mean", "image.std", "image.min", "image.max", "image.l2"]
    assert list(reference.columns) == names and columns_of(IMAGE) == {"image": names}
    means = images(2, seed=1).mean(axis=(1, 2, 3))
    assert reference["image.mean"].head(2).round(6).tolist() == means.round(6).tolist()
    result = compare(reference, current, html=False)
    assert "image.mean" in flagged(result) and "image.l2" in flagged(result)


def test_channels_sequences_and_strings_become_columns():
    schema = {
        "photo": {"dtype": "uint8", "shape": [-1, 3, 4, 4]},
        "audio": {"dtype": "float32", "shape": [-1, -1]},
        "city": {"dtype": "string", "shape": [-1]},
    }
    row = {"photo": [np.ones((3, 4, 4)).tolist()], "audio": [[3.0, 4.0]], "city": ["Oslo"]}
    frame = input_frame([row], schema)
    assert columns_of(schema)["photo"][5:7] == ["photo.c0.mean", "photo.c0.std"]
    assert len(columns_of(schema)["photo"]) == 20 and columns_of(schema)["audio"][-1] == "audio.size"
    row = frame.iloc[0]
    assert (row["photo.c2.max"], row["audio.l2"], row["audio.size"], row["city"]) == (1.0, 5.0, 2.0, "Oslo")


def test_too_few_rows_is_not_enough_data_never_a_verdict():
    reference = input_frame(logged("features", iris_like(500, seed=1)), FEATURES)
    current = input_frame(logged("features", iris_like(20, seed=2, shift=(9, 9, 9, 9))), FEATURES)
    result = compare(reference, current)
    assert {c["note"] for c in result["columns"]} == {f"not enough data: 20 rows; at least {MIN_ROWS} needed"}
    assert {(c["drifted"], c["score"], c["method"]) for c in result["columns"]} == {(None, None, None)}
    assert (result["share"], result["drifted"], result["html"]) == (None, None, None)


def test_mismatched_columns_are_named():
    five = {"features": {"dtype": "float32", "shape": [-1, 5]}}
    wide = input_frame(logged("features", np.ones((40, 5))), five)
    narrow = input_frame(logged("features", np.ones((40, 4))), FEATURES)
    with pytest.raises(ValueError, match="^reference column 'features.4' is not in the inputs$"):
        compare(wide, narrow)
    with pytest.raises(ValueError, match="^outputs column 'features.4' is not in the reference$"):
        compare(narrow, wide, kind="outputs")


def test_reference_csv_of_an_image_package_becomes_summary_columns():
    frame = reference_frame(ROOT / "examples/digits-torch/reference.csv", IMAGE, OUTPUTS)
    assert list(frame.columns) == ["image.mean", "image.std", "image.min", "image.max", "image.l2"]
    assert len(frame) > 1000 and frame["image.max"].max() == 16.0


def test_reference_csv_columns_that_do_not_fit_are_named(tmp_path):
    path = tmp_path / "reference.csv"
    path.write_text("features.0,features.1,features.2,features.3,features.4\n1,2,3,4,5\n")
    with pytest.raises(ValueError, match="^reference column 'features.4' is not in the inputs: features has"):
        reference_frame(path, FEATURES)
    path.write_text("features.0,features.1,features.3,label\n1,2,4,0\n")
    with pytest.raises(ValueError, match="^reference column 'features.2' is missing: features has 4 values$"):
        reference_frame(path, FEATURES, OUTPUTS)
    path.write_text("features.0,features.1,features.2,features.3,colour\n1,2,3,4,red\n")
    with pytest.raises(ValueError, match="^reference column 'colour' is not in the inputs \\(features\\)$"):
        reference_frame(path, FEATURES, OUTPUTS)


def write_job(tmp_path: Path, **job) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"inputs": FEATURES, "outputs": OUTPUTS, "labels": LABELS, **job}))
    return path


def test_main_end_to_end_writes_result_and_reports(tmp_path):
    table = iris_like(300, seed=1)
    csv = tmp_path / "reference.csv"
    pd.DataFrame(table, columns=[f"features.{i}" for i in range(4)]).assign(label=0).to_csv(csv, index=False)
    job = write_job(
        tmp_path,
        reference_csv=str(csv),
        current_inputs=logged("features", iris_like(300, seed=2, shift=(0, 0, 2.0, 0))),
        reference_outputs=predicted([0, 1, 2] * 100),
        current_outputs=predicted([2] * 300),
    )
    run = subprocess.run([sys.executable, "-m", "monitor.driftworker", str(job), str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out/result.json").read_text())
    assert flagged(result["inputs"]) == ["features.2"] and "html" not in result["inputs"]
    assert result["inputs"]["rows"] == {"reference": 300, "current": 300}
    assert "label" in flagged(result["outputs"])
    methods = {c["column"]: c["method"] for c in result["outputs"]["columns"]}
    z_tests = {f"probabilities.{i}": "Z-test p_value" for i in range(3)}  # two values: compared as categories
    assert methods == {"label": "chi-square p_value"} | z_tests
    pages = {name: (tmp_path / "out" / name).read_text() for name in ("report.html", "report-outputs.html")}
    assert all("<html" in page and len(page) > 10_000 for page in pages.values())
    assert "features.2" in pages["report.html"] and "chi-square" in pages["report-outputs.html"]


def test_main_bad_reference_exits_2_naming_the_column(tmp_path, capsys):
    csv = tmp_path / "reference.csv"
    csv.write_text("features.0,features.1,features.2,features.9\n1,2,3,4\n")
    job = write_job(tmp_path, reference_csv=str(csv), current_inputs=[])
    assert main([str(job), str(tmp_path / "out")]) == 2
    message = "reference column 'features.9' is not in the inputs: features has 4 values\n"
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()


def test_logged_calls_come_as_json_lines_beside_the_job_and_a_broken_line_is_left_out(tmp_path):
    """The hub writes the logged calls as stored (hub/drift.py _write_calls); the worker parses them."""

    def lines(inputs: list[dict], outputs: list[dict]) -> str:
        pairs = zip(inputs, outputs, strict=True)
        return "".join(json.dumps({"inputs": i, "outputs": o}) + "\n" for i, o in pairs)

    reference = lines(logged("features", iris_like(300, seed=1)), predicted([0, 1, 2] * 100)[:60])
    shifted = iris_like(300, seed=2, shift=(0, 0, 2.0, 0))
    current = lines(logged("features", shifted), predicted([2] * 300)[:60])
    (tmp_path / "reference_calls.jsonl").write_text(reference)
    (tmp_path / "current_calls.jsonl").write_text(current + '{"inputs": {"features": [[1.0, 2.\n')
    job = write_job(tmp_path, reference_calls="reference_calls.jsonl", current_calls="current_calls.jsonl")
    assert main([str(job), str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out/result.json").read_text())
    assert flagged(result["inputs"]) == ["features.2"]
    assert result["inputs"]["rows"] == {"reference": 300, "current": 300}
    assert "label" in flagged(result["outputs"])


def test_main_without_verdicts_writes_a_page_that_says_why(tmp_path):
    job = write_job(tmp_path, reference_inputs=logged("features", iris_like(10, seed=1)), current_inputs=[])
    assert main([str(job), str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out/result.json").read_text())
    assert (result["inputs"]["share"], result["outputs"]) == (None, None)
    assert "not enough data: 0 rows; at least 30 needed" in (tmp_path / "out/report.html").read_text()


def test_timing_20_columns_10000_rows_against_5000():
    rng = np.random.default_rng(7)
    names = [f"x.{i}" for i in range(20)]
    reference = pd.DataFrame(rng.normal(size=(5_000, 20)), columns=names)
    current = pd.DataFrame(rng.normal(size=(10_000, 20)) + np.eye(20)[3], columns=names)
    compare(reference.head(100), current.head(100), html=False)  # Evidently imported outside the timing
    started = time.perf_counter()
    fast = compare(reference, current, html=False)
    middle = time.perf_counter()
    full = compare(reference, current, html=True)
    done = time.perf_counter()
    seconds = f"html=False {middle - started:.2f} s, html=True {done - middle:.2f} s"
    print(f"\ndrift 20 columns x 10,000 rows vs 5,000: {seconds}")
    assert fast["columns"] == full["columns"] and flagged(fast) == ["x.3"]
    assert "<html" in full["html"] and "Wasserstein distance (normed)" in full["html"]


def test_a_serving_worker_answers_job_after_job_and_survives_a_bad_one(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("features.9\n1\n")
    (tmp_path / "bad").mkdir()
    bad = write_job(tmp_path / "bad", reference_csv=str(bad_csv), current_inputs=[])
    good = write_job(
        tmp_path,
        reference_inputs=logged("features", iris_like(100, seed=1)),
        current_inputs=logged("features", iris_like(100, seed=2, shift=(0, 3.0, 0, 0))),
    )
    requests = [
        {"job": str(bad), "out": str(tmp_path / "out-1")},
        {"job": str(good), "out": str(tmp_path / "out-2")},
    ]
    worker = subprocess.run(
        [sys.executable, "-m", "monitor.driftworker", "--serve"], cwd=ROOT, capture_output=True, text=True,
        input="".join(json.dumps(r) + "\n" for r in requests), timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    replies = [json.loads(line) for line in worker.stdout.splitlines()]
    assert replies == [
        {"ok": False, "error": "reference column 'features.9' is not in the inputs: features has 4 values"},
        {"ok": True},
    ]
    result = json.loads((tmp_path / "out-2" / "result.json").read_text())
    assert flagged(result["inputs"]) == ["features.1"]

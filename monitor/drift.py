"""Drift of logged inputs and outputs against a reference, computed with Evidently.

Runs in a child process of the hub (`python -m monitor.driftworker`), never in the web
process: Evidently is imported only inside the functions that call it. Logged values become one row
per item (a batch of n is n rows) and one column per scalar, per element of a small fixed vector, or
per summary of a larger tensor (mean, std, min, max, L2 norm; per channel when the shape has 2-4
channels). `compare` runs Evidently's per-column drift tests (its own choice of test per column) and,
when asked, renders its data drift report for the same columns with the same tests and thresholds.
"""

from __future__ import annotations

import html as markup
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

MIN_ROWS = 30  # fewer rows than this in a column (reference or current): "not enough data"
VECTOR_MAX = 32  # fixed vectors up to this many values become one column per value
DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifts when this share of its columns does
SUMMARIES = ("mean", "std", "min", "max", "l2")
MAX_CHANNELS = 4


def _item_shape(spec: dict) -> tuple[bool, list[int]]:
    """(batched, the shape of one item): a leading -1 is the batch, one row per item."""
    shape = list(spec.get("shape") or [])
    batched = bool(shape) and shape[0] == -1
    return batched, shape[1:] if batched else shape


def _kind(spec: dict) -> str:
    item = _item_shape(spec)[1]
    if not item:
        return "scalar"
    if -1 not in item and len(item) <= 2 and math.prod(item) <= VECTOR_MAX:
        return "vector"
    return "summary"


def _channels(spec: dict) -> int:
    item = _item_shape(spec)[1]
    return item[0] if len(item) >= 3 and 2 <= item[0] <= MAX_CHANNELS else 0


def _dynamic(spec: dict) -> bool:
    return -1 in _item_shape(spec)[1]


def columns_of(schema: dict) -> dict[str, list[str]]:
    """{tensor name: the columns it becomes}, in schema order."""
    return {name: list(_tensor_columns(name, spec, [], [])) for name, spec in schema.items()}


_KINDS = {"string": "U", "bool": "b"}  # numpy dtype kinds; any other dtype is a number


def _as_array(value, dtype: str | None) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        return None
    if array.dtype.kind not in _KINDS.get(dtype or "", "iuf"):
        return None
    return array if array.dtype.kind in "Ub" else array.astype(np.float64)


def _fits(shape: tuple, item: list[int]) -> bool:
    return len(shape) == len(item) and all(e in (-1, g) for e, g in zip(item, shape, strict=True))


def _items(value, spec: dict) -> list[np.ndarray] | None:
    """The items of one logged value (one per batch row), or None when it does not fit the spec."""
    batched, item = _item_shape(spec)
    array = _as_array(value, spec.get("dtype"))
    if array is None or (batched and array.ndim == 0):
        return None
    if batched and array.size == 0 and array.ndim == 1:
        return []
    parts = list(array) if batched else [array]
    return parts if all(_fits(part.shape, item) for part in parts) else None


def _row_items(row, schema: dict) -> dict[str, list[np.ndarray]] | None:
    if not isinstance(row, dict):
        return None
    parts = {name: _items(row[name], spec) for name, spec in schema.items() if name in row}
    if len(parts) < len(schema) or any(p is None for p in parts.values()):
        return None
    sizes = {len(parts[n]) for n, spec in schema.items() if _item_shape(spec)[0]}
    if len(sizes) > 1:
        return None
    count = sizes.pop() if sizes else 1
    return {n: p if _item_shape(schema[n])[0] else p * count for n, p in parts.items()}


def _collect(rows: list, schema: dict) -> tuple[dict[str, list[np.ndarray]], int]:
    items: dict[str, list[np.ndarray]] = {name: [] for name in schema}
    skipped = 0
    for row in rows:
        parts = _row_items(row, schema)
        if parts is None:
            skipped += 1
            continue
        for name, values in parts.items():
            items[name].extend(values)
    return items, skipped


def _matrix_stats(prefix: str, matrix: np.ndarray) -> dict[str, np.ndarray]:
    if matrix.shape[1] == 0:
        return {f"{prefix}.{s}": np.full(len(matrix), np.nan) for s in SUMMARIES}
    l2 = np.sqrt(np.square(matrix).sum(axis=1))
    values = (matrix.mean(axis=1), matrix.std(axis=1), matrix.min(axis=1), matrix.max(axis=1), l2)
    return {f"{prefix}.{s}": v for s, v in zip(SUMMARIES, values, strict=True)}


def _stats(prefix: str, flats: list[np.ndarray]) -> dict[str, np.ndarray]:
    if len({flat.size for flat in flats}) <= 1:  # one size: one vectorised pass
        return _matrix_stats(prefix, np.stack(flats) if flats else np.empty((0, 1)))
    parts = [_matrix_stats(prefix, flat[None, :]) for flat in flats]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _summaries(name: str, spec: dict, items: list[np.ndarray]) -> dict[str, np.ndarray]:
    sizes = {f"{name}.size": np.array([item.size for item in items], dtype=np.float64)}
    if spec.get("dtype") == "string":
        return sizes
    flats = [item.astype(np.float64).ravel() for item in items]
    columns = _stats(name, flats)
    channels = _channels(spec)
    for c in range(channels):
        columns.update(_stats(f"{name}.c{c}", [flat.reshape(channels, -1)[c] for flat in flats]))
    return columns | (sizes if _dynamic(spec) else {})


def _values(array: np.ndarray, dtype: str | None, labels: list[str]) -> np.ndarray | list:
    if dtype in _KINDS:
        return [str(v).lower() if dtype == "bool" else str(v) for v in array]
    if labels and (dtype or "").startswith(("int", "uint")):
        return [labels[int(v)] if 0 <= v < len(labels) else str(int(v)) for v in array]
    return array.astype(np.float64)


def _tensor_columns(name: str, spec: dict, items: list, labels: list[str]) -> dict:
    kind, dtype = _kind(spec), spec.get("dtype")
    if kind == "summary":
        return _summaries(name, spec, items)
    width = 1 if kind == "scalar" else math.prod(_item_shape(spec)[1])
    matrix = np.stack([item.reshape(-1) for item in items]) if items else np.empty((0, width))
    if kind == "scalar":
        return {name: _values(matrix[:, 0], dtype, labels)}
    return {f"{name}.{i}": _values(matrix[:, i], dtype, []) for i in range(width)}


def _build(schema: dict, labels: list[str], items: dict, skipped: int) -> pd.DataFrame:
    columns: dict = {}
    for name, spec in schema.items():
        columns.update(_tensor_columns(name, spec, items[name], labels))
    frame = pd.DataFrame(columns)
    frame.attrs["skipped"] = skipped
    return frame


def input_frame(rows: list[dict], schema: dict) -> pd.DataFrame:
    """Logged inputs -> one row per item; rows that do not fit are counted in attrs["skipped"]."""
    return _build(schema, [], *_collect(rows, schema))


def output_frame(rows: list[dict], schema: dict, labels: list[str]) -> pd.DataFrame:
    """Logged outputs -> one row per item; a scalar integer output with labels becomes label names."""
    return _build(schema, list(labels or []), *_collect(rows, schema))


def _csv_place(column: str, inputs: dict, outputs: dict) -> tuple[str, int | None] | None:
    """(input, element index) of a reference column; None for an output's column."""
    for schema, keep in ((inputs, True), (outputs, False)):
        base, _, index = column.rpartition(".")
        place = (column, None) if column in schema else (base, int(index)) if index.isdigit() else None
        if place and place[0] in schema:
            return place if keep else None
    raise ValueError(f"reference column {column!r} is not in the inputs ({', '.join(inputs)})")


def _csv_order(name: str, spec: dict, indexes: dict[int | None, str]) -> list[str]:
    """The reference columns of one input in element order, checked against its width."""
    if not indexes:
        raise ValueError(f"input {name!r} has no column in the reference; name them {name}.0, {name}.1 ...")
    if _dynamic(spec):
        return [indexes[i] for i in sorted(indexes, key=lambda i: i or 0)]
    width = math.prod(_item_shape(spec)[1])
    if width == 1 and None in indexes and 0 not in indexes:
        indexes = {0: indexes.pop(None)} | indexes
    extra = [column for i, column in indexes.items() if i is None or i >= width]
    if extra:
        raise ValueError(f"reference column {extra[0]!r} is not in the inputs: {name} has {width} values")
    missing = [f"{name}.{i}" for i in range(width) if i not in indexes]
    if missing:
        raise ValueError(f"reference column {missing[0]!r} is missing: {name} has {width} values")
    return [indexes[i] for i in range(width)]


def _csv_numbers(table: pd.DataFrame, names: list[str]) -> np.ndarray:
    columns = []
    for name in names:
        try:
            columns.append(pd.to_numeric(table[name]).to_numpy(np.float64))
        except (ValueError, TypeError) as e:
            raise ValueError(f"reference column {name!r} holds a value that is not a number: {e}") from e
    return np.column_stack(columns) if columns else np.empty((len(table), 0))


def _csv_items(table: pd.DataFrame, names: list[str], spec: dict) -> list[np.ndarray]:
    strings = spec.get("dtype") in _KINDS
    matrix = table[names].astype(str).to_numpy() if strings else _csv_numbers(table, names)
    if _dynamic(spec):
        return [row[~pd.isna(row)] for row in matrix]
    return [row.reshape(_item_shape(spec)[1]) for row in matrix]


def reference_frame(path: str | Path, inputs: dict, outputs: dict | None = None) -> pd.DataFrame:
    """The package's reference.csv (columns <input> / <input>.<i>) as an input frame; columns of
    outputs are ignored, any other column is a ValueError naming it."""
    table = pd.read_csv(path)
    placed: dict[str, dict] = {name: {} for name in inputs}
    for column in table.columns:
        place = _csv_place(str(column), inputs, outputs or {})
        if place:
            placed[place[0]][place[1]] = str(column)
    items = {n: _csv_items(table, _csv_order(n, s, placed[n]), s) for n, s in inputs.items()}
    return _build(inputs, [], items, 0)


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame, kind: str) -> None:
    only_reference = [c for c in reference.columns if c not in current.columns]
    only_current = [c for c in current.columns if c not in reference.columns]
    if only_reference:
        raise ValueError(f"reference column {only_reference[0]!r} is not in the {kind}")
    if only_current:
        raise ValueError(f"{kind} column {only_current[0]!r} is not in the reference")


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _prepared(reference: pd.Series, current: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """Both sides cleaned as Evidently does (no inf, no NaN); 'num' or 'cat'."""
    if _numeric(reference) and _numeric(current):
        finite = [s.astype(np.float64).replace([np.inf, -np.inf], np.nan) for s in (reference, current)]
        return finite[0].dropna(), finite[1].dropna(), "num"
    return reference.dropna().astype(str), current.dropna().astype(str), "cat"


def _chosen_test(reference: pd.Series, current: pd.Series, kind: str) -> tuple:
    """Evidently's choice of test; a number column with few values that gets a test for categories
    (Z-test, chi-square) is compared as categories, as the test (and the HTML report) expect."""
    from evidently.legacy.calculations.stattests import get_stattest

    test = get_stattest(reference, current, kind, None)
    if kind in {t.value for t in test.allowed_feature_types}:
        return reference, current, kind, test
    reference, current = reference.astype(str), current.astype(str)
    return reference, current, "cat", get_stattest(reference, current, "cat", None)


def _column_drift(column: str, reference: pd.Series, current: pd.Series, min_rows: int) -> dict:
    reference, current, kind = _prepared(reference, current)
    row = {"column": column, "method": None, "score": None, "threshold": None, "drifted": None}
    rows = min(len(reference), len(current))
    if rows < min_rows:
        return row | {"note": f"not enough data: {rows} rows; at least {min_rows} needed", "kind": kind}
    reference, current, kind, test = _chosen_test(reference, current, kind)
    result = test(reference, current, kind, None)
    score = float(result.drift_score)
    return row | {
        "method": test.display_name, "score": None if math.isnan(score) else score,
        "threshold": float(result.actual_threshold), "drifted": bool(result.drifted),
        "note": "", "kind": kind, "test": test.name,
    }  # fmt: skip


def compare(reference: pd.DataFrame, current: pd.DataFrame, min_rows: int = MIN_ROWS,
            html: bool = True, *, kind: str = "inputs") -> dict:  # fmt: skip
    """Evidently drift of every column the two frames share (see the module docstring)."""
    _check_columns(reference, current, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tested = [_column_drift(c, reference[c], current[c], min_rows) for c in sorted(reference.columns)]
        judged = [row for row in tested if row["drifted"] is not None]
        report = _report_html(current, reference, judged=judged) if html and judged else None
    share = sum(row["drifted"] for row in judged) / len(judged) if judged else None
    sides = {"reference": reference, "current": current}
    return {
        "columns": [{k: v for k, v in row.items() if k not in ("kind", "test")} for row in tested],
        "share": share,
        "drifted": None if share is None else share >= DRIFT_SHARE,
        "rows": {side: len(frame) for side, frame in sides.items()},
        "skipped": {side: frame.attrs.get("skipped", 0) for side, frame in sides.items()},
        "html": report,
    }


def _report_html(*frames: pd.DataFrame, judged: list[dict]) -> str:
    """Evidently's data drift report over the judged columns, pinned to the tests used for them."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [row["column"] for row in judged]
    types = {row["column"]: np.float64 if row["kind"] == "num" else str for row in judged}
    spec = DataDefinition(
        numerical_columns=[n for n in names if types[n] is np.float64],
        categorical_columns=[n for n in names if types[n] is str],
    )
    preset = DataDriftPreset(
        columns=names,
        drift_share=DRIFT_SHARE,
        per_column_method={row["column"]: row["test"] for row in judged},
        per_column_threshold={row["column"]: row["threshold"] for row in judged},
    )
    now, then = (Dataset.from_pandas(f[names].astype(types), data_definition=spec) for f in frames)
    return Report([preset]).run(now, then).get_html_str(as_iframe=False)


def _notes_page(result: dict, title: str) -> str:
    notes = sorted({row["note"] for row in result["columns"] if row["note"]}) or ["no columns to compare"]
    items = "".join(f"<li>{markup.escape(note)}</li>" for note in notes)
    head = f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>"
    return f"{head}<body><h1>{title}</h1><ul>{items}</ul></body></html>\n"


def _reference_inputs(job: dict, inputs: dict) -> pd.DataFrame:
    if job.get("reference_csv"):
        path = Path(job["reference_csv"])
        if not path.is_file():
            raise ValueError(f"reference file {str(path)!r} does not exist")
        return reference_frame(path, inputs, job.get("outputs"))
    return input_frame(job.get("reference_inputs") or [], inputs)


def _compare_outputs(job: dict, min_rows: int, html: bool) -> dict | None:
    schema, labels = job.get("outputs") or {}, job.get("labels") or []
    reference, current = job.get("reference_outputs"), job.get("current_outputs")
    if not (schema and reference and current):
        return None
    frames = [output_frame(rows, schema, labels) for rows in (reference, current)]
    return compare(frames[0], frames[1], min_rows, html, kind="outputs")


def run_job(job: dict) -> tuple[dict, dict[str, str]]:
    """(result.json's content, {file name: HTML}) for one drift job."""
    min_rows, html = int(job.get("min_rows") or MIN_ROWS), bool(job.get("html", True))
    inputs = job.get("inputs") or {}
    if not inputs:
        raise ValueError("the job has no input schema ('inputs')")
    current = input_frame(job.get("current_inputs") or [], inputs)
    result = {"inputs": compare(_reference_inputs(job, inputs), current, min_rows, html)}
    result["outputs"] = _compare_outputs(job, min_rows, html)
    pages = {"report.html": result["inputs"].pop("html") or _notes_page(result["inputs"], "Input drift")}
    if result["outputs"] is not None:
        page = result["outputs"].pop("html") or _notes_page(result["outputs"], "Output drift")
        pages["report-outputs.html"] = page
    return result, pages

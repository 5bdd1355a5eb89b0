"""Writing a dataset's rows to a file chunk by chunk (Parquet row groups, CSV and JSON lines written
line by line), and reading a stored one back as reference data. pyarrow is imported only here, and only
when a Parquet file is written or read: the web process never loads it at startup."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from monitor.datasets import Column

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "jsonl": "application/jsonl"}
READ_BATCH = 10_000


def text_of(value) -> str:
    """A CSV cell: empty for None, true/false for booleans, ISO 8601 (UTC, Z) for times."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return str(value)


class CsvWriter:
    def __init__(self, path: Path, columns: list[Column]):
        self.file = path.open("w", newline="", encoding="utf-8")
        self.out = csv.writer(self.file)
        self.out.writerow([c.name for c in columns])

    def write(self, rows: list[list]) -> None:
        self.out.writerows([[text_of(v) for v in row] for row in rows])

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter:
    def __init__(self, path: Path, columns: list[Column]):
        self.file = path.open("w", encoding="utf-8")
        self.names = [c.name for c in columns]
        self.json = [c.type == "json" for c in columns]

    def write(self, rows: list[list]) -> None:
        self.file.writelines(self._line(row) for row in rows)

    def _line(self, row: list) -> str:
        values = [_json_cell(v, is_json) for v, is_json in zip(row, self.json, strict=True)]
        return json.dumps(dict(zip(self.names, values, strict=True)), ensure_ascii=False) + "\n"

    def close(self) -> None:
        self.file.close()


def _json_cell(value, is_json: bool):
    if isinstance(value, datetime):
        return text_of(value)
    return json.loads(value) if is_json and value is not None else value


class ParquetWriter:
    """One row group per chunk of rows; the schema is written even when no row comes."""

    def __init__(self, path: Path, columns: list[Column]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.types = [_arrow_type(pa, c.type) for c in columns]
        self.schema = pa.schema([pa.field(c.name, t) for c, t in zip(columns, self.types, strict=True)])
        self.out = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, rows: list[list]) -> None:
        if not rows:
            return
        arrays = [
            self.pa.array(values, t) for values, t in zip(zip(*rows, strict=True), self.types, strict=True)
        ]
        self.out.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.out.close()


def _arrow_type(pa, kind: str):
    types = {
        "float": pa.float64(),
        "int": pa.int64(),
        "bool": pa.bool_(),
        "time": pa.timestamp("us", tz="UTC"),
    }
    return types.get(kind, pa.string())


WRITERS = {"parquet": ParquetWriter, "csv": CsvWriter, "jsonl": JsonLinesWriter}


def write_dataset(
    path: Path, fmt: str, columns: list[Column], chunks: Iterable[list[list]]
) -> tuple[int, int]:
    """Write every chunk of rows to `path` as `fmt`; (rows, rows with a feedback label)."""
    label = [c.name for c in columns].index("feedback.label")
    writer = WRITERS[fmt](path, columns)
    rows = labels = 0
    try:
        for chunk in chunks:
            writer.write(chunk)
            rows += len(chunk)
            labels += sum(1 for row in chunk if row[label] is not None)
    finally:
        writer.close()
    return rows, labels


def stored_rows(path: Path, fmt: str, names: list[str]) -> Iterator[list]:
    """The values of columns `names` of a stored dataset file, row by row, read in batches."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=READ_BATCH, columns=names):
            yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)
        return
    with path.open(encoding="utf-8", newline="") as f:
        if fmt == "csv":
            yield from ([row.get(n) or None for n in names] for row in csv.DictReader(f))
        else:
            yield from ([json.loads(line).get(n) for n in names] for line in f)


def reference_csv(path: Path, fmt: str, columns: list[dict]) -> Iterator[str]:
    """A stored dataset as reference data: a CSV of its input columns only (`<input>`, `<input>.<i>`),
    one line per row; a row with an empty input cell (its payload was capped) is left out."""
    names = [c["name"] for c in columns if c["role"] == "input"]
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(names)
    for values in stored_rows(path, fmt, names):
        if all(v is not None for v in values):
            out.writerow([_reference_cell(v) for v in values])
        if buffer.tell() >= 64 * 1024:
            yield _taken(buffer)
    yield _taken(buffer)


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _reference_cell(value) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return text_of(value)

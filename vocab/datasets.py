"""The file formats a dataset snapshot is written in: one list that the CLI and the hub both read."""

FORMATS = ("parquet", "csv", "jsonl")
SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}

"""How doubtful one logged answer is, and whether its input lies outside a reference: the pure
arithmetic of the review queue (monitor/reviews.py), standard library only (the hub process never
loads numpy for it).

Only answers of ONE item (a batch of one, or an unbatched call) are judged: a reviewer gives one label
per prediction, which cannot be right for several rows at once.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

MEASURES = ("max_probability", "margin", "entropy")
DEFAULT_THRESHOLDS = {"max_probability": 0.6, "margin": 0.2, "entropy": 0.8}
PROBABILITY_NAMES = ("probabilities", "probability", "probs", "proba", "scores")
VECTOR_MAX = 32  # inputs of up to this many values per item become columns, as in drift runs


@dataclass(frozen=True)
class Doubt:
    score: float  # 0..1: higher is more worth a look
    text: str  # what a reviewer reads: "max probability 0.41"


def _one_item(value):
    """The single item of a logged value: [[a, b]] -> [a, b], [a] -> a; None for several items."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return None


def probability_output(outputs_schema: dict, labels: tuple[str, ...]) -> str | None:
    """The output holding class probabilities: one named like them, else a float output with one value
    per label."""
    for name in outputs_schema:
        if name.lower() in PROBABILITY_NAMES:
            return name
    for name, spec in outputs_schema.items():
        shape = list(spec.get("shape") or [])
        if str(spec.get("dtype", "")).startswith("float") and shape and shape[-1] == len(labels) > 1:
            return name
    return None


def probabilities(outputs: dict, name: str | None) -> list[float] | None:
    """The answer's probabilities (one item), as a distribution: scores outside [0, 1] or not summing
    to 1 (logits) go through a softmax."""
    if not name or not isinstance(outputs, dict):
        return None
    item = _one_item(outputs.get(name))
    if not isinstance(item, list) or len(item) < 2:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in item):
        return None
    values = [float(v) for v in item]
    if min(values) < 0 or max(values) > 1 or abs(sum(values) - 1.0) > 1e-3:
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        values = [e / sum(exps) for e in exps]
    return values


def doubt(probs: list[float], measure: str, threshold: float) -> Doubt | None:
    """The answer's doubt when it crosses `threshold` (max probability or margin below it; entropy,
    as a share of its largest possible value, above it); None when the model was sure enough."""
    ranked = sorted(probs, reverse=True)
    if measure == "max_probability":
        value, chosen = ranked[0], ranked[0] < threshold
        score = 1.0 - value
    elif measure == "margin":
        value = ranked[0] - ranked[1]
        chosen, score = value < threshold, 1.0 - value
    else:
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        value = score = entropy / math.log(len(probs))
        chosen = value > threshold
    name = measure.replace("_", " ")
    return Doubt(min(max(score, 0.0), 1.0), f"{name} {value:.2f}") if chosen else None


def answer_label(outputs: dict, probs: list[float] | None, labels: tuple[str, ...]) -> str | None:
    """The label one item's answer gave: its `label` output (or its only output), as a name or an index
    into `labels`; else the most probable class."""
    value = outputs.get("label", next(iter(outputs.values())) if len(outputs) == 1 else None)
    value = _one_item(value) if isinstance(value, list) else value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return labels[value]
    if isinstance(value, str):
        return value
    if probs and len(probs) == len(labels):
        return labels[max(range(len(probs)), key=probs.__getitem__)]
    return None


def columns(inputs: dict, schema: dict) -> dict[str, float] | None:
    """One item's numeric input columns named as drift runs and reference data name them (`x` for a
    scalar, `x.0`, `x.1` ... for a small vector); None when the call held several items."""
    found: dict[str, float] = {}
    for name, spec in schema.items():
        value = inputs.get(name) if isinstance(inputs, dict) else None
        shape = list(spec.get("shape") or [])
        if shape and shape[0] == -1:
            value = _one_item(value)
            if value is None:
                return None
        found.update(_flat(name, value))
    return found


def _flat(name: str, value) -> dict[str, float]:
    if _number(value):
        return {name: float(value)}
    flat, stack = [], [value]
    while stack and len(flat) <= VECTOR_MAX:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif _number(item):
            flat.append(float(item))
        else:
            return {}
    return {f"{name}.{i}": v for i, v in enumerate(flat)} if len(flat) <= VECTOR_MAX else {}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ranges(rows: list[dict[str, float]], wanted: set[str]) -> dict[str, tuple[float, float]]:
    """The smallest and largest value of each wanted column over the reference rows."""
    found: dict[str, tuple[float, float]] = {}
    for row in rows:
        for column in wanted & row.keys():
            low, high = found.get(column, (row[column], row[column]))
            found[column] = (min(low, row[column]), max(high, row[column]))
    return found


def csv_rows(path: Path, wanted: set[str], limit: int = 100_000) -> list[dict[str, float]]:
    """The wanted numeric columns of a reference CSV (a package's reference_data), as rows."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for number, record in enumerate(csv.DictReader(f)):
            if number >= limit:
                break
            row = {}
            for column in wanted & record.keys():
                try:
                    row[column] = float(record[column])
                except (TypeError, ValueError):
                    continue
            rows.append(row)
    return rows


def outside(item: dict[str, float], bounds: dict[str, tuple[float, float]]) -> Doubt | None:
    """How far the item lies outside the reference range of a drifted column (the farthest one, as a
    share of that column's range, at most 1); None when every value is inside."""
    worst: tuple[float, str] | None = None
    for column, (low, high) in bounds.items():
        value = item.get(column)
        if value is None or low <= value <= high:
            continue
        distance = (low - value if value < low else value - high) / ((high - low) or 1.0)
        text = f"{column} = {value:g}, outside the reference's {low:g} to {high:g}"
        if worst is None or distance > worst[0]:
            worst = (distance, text)
    return Doubt(min(worst[0], 1.0), worst[1]) if worst else None

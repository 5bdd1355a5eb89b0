"""Helpers shared by the example builders: the held-out split, reference data and examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

SEED = 0
TEST_SIZE = 0.25


def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Stratified train/held-out split, the same for every example: x_train, x_test, y_train, y_test."""
    return train_test_split(x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "held_out_rows": int(len(y_true)),
    }


def write_reference(path: Path, input_name: str, x: np.ndarray) -> None:
    """The drift baseline: one row per input row, columns <input>.<index> in row-major order."""
    rows = x.reshape(len(x), -1)
    header = ",".join(f"{input_name}.{i}" for i in range(rows.shape[1]))
    np.savetxt(path, rows, fmt="%.10g", delimiter=",", header=header, comments="")


def confident_rows(y_true: np.ndarray, proba: np.ndarray, classes: list[int]) -> list[int]:
    """Per class, the held-out row predicted right with the highest probability.

    Confident rows keep the expected label stable across runtimes (sklearn, onnxruntime, torch)."""
    right = proba.argmax(axis=1) == y_true
    rows = []
    for c in classes:
        candidates = np.flatnonzero(right & (y_true == c))
        rows.append(int(candidates[proba[candidates, c].argmax()]))
    return rows


def write_examples(path: Path, input_name: str, rows: np.ndarray, labels: np.ndarray) -> None:
    """examples.json: each row alone, then all rows as one batch, with their exact expected labels.

    Float outputs are left out: they differ in the last digits between runtimes."""
    batches = [(rows[i : i + 1], labels[i : i + 1]) for i in range(len(rows))] + [(rows, labels)]
    examples = [
        {"inputs": {input_name: batch.tolist()}, "outputs": {"label": [int(v) for v in expected]}}
        for batch, expected in batches
    ]
    path.write_text(json.dumps(examples) + "\n", encoding="utf-8")

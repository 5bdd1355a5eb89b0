"""What a version's server is sized and told: the manifest's `batching:` field, workers and threads from
`resources.cpu`, and the generated service's batching settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from registry.batching import batching_settings
from registry.manifest import PackageInvalid, parse_manifest
from runners.base import ServeSpec
from runners.service import batching_options, render_service, serving_plan

MINIMAL = {"name": "ok", "version": "1.0.0", "task": "t", "framework": "python", "entrypoint": "p.py:M",
           "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}}}  # fmt: skip


DEFAULTS = {"enabled": False, "max_batch_size": 32, "max_latency_ms": 10}
ROWS = "must be a number from 1 to 4096 rows, such as 32"


def problems_of(batching, **fields) -> list[str]:
    with pytest.raises(PackageInvalid) as e:
        parse_manifest({**MINIMAL, **fields, "batching": batching})
    return [str(p) for p in e.value.problems]


def test_batching_is_off_by_default_with_its_settings():
    assert parse_manifest(MINIMAL).batching == DEFAULTS
    assert parse_manifest(MINIMAL).to_dict()["batching"]["enabled"] is False


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, {**DEFAULTS, "enabled": True}),
        (False, DEFAULTS),
        ({"max_batch_size": 64}, {**DEFAULTS, "enabled": True, "max_batch_size": 64}),
        ({"enabled": True, "max_latency_ms": 2.5}, {**DEFAULTS, "enabled": True, "max_latency_ms": 2.5}),
        ({"enabled": False, "max_latency_ms": 0}, {**DEFAULTS, "max_latency_ms": 0}),
    ],
)
def test_batching_shorthand_and_settings(value, expected):
    assert parse_manifest({**MINIMAL, "batching": value}).batching == expected


@pytest.mark.parametrize(
    "value, problem",
    [
        ("yes", "batching: must be {enabled: true, max_batch_size: 32, max_latency_ms: 10} (or true / "
         "false)"),
        ({"enabled": "yes"}, "batching.enabled: 'yes' must be true or false"),
        ({"max_batch_size": 0}, f"batching.max_batch_size: 0 {ROWS}"),
        ({"max_batch_size": 8.5}, f"batching.max_batch_size: 8.5 {ROWS}"),
        ({"max_batch_size": True}, f"batching.max_batch_size: True {ROWS}"),
        ({"max_latency_ms": -1}, "batching.max_latency_ms: -1 must be a number from 0 to 1000 milliseconds, "
         "such as 10 (0: never wait for more calls)"),
        ({"max_rows": 8}, "batching.max_rows: unknown key; use enabled, max_batch_size, max_latency_ms"),
    ],
)  # fmt: skip
def test_bad_batching_settings_name_the_field_and_the_fix(value, problem):
    assert problems_of(value) == [problem]


def test_batching_needs_every_input_to_start_with_the_batch_dimension():
    inputs = {"x": {"dtype": "float32", "shape": [-1, 4]}, "scale": {"dtype": "float32", "shape": []},
              "image": {"dtype": "float32", "shape": [3, 32, 32]}}  # fmt: skip
    assert problems_of(True, inputs=inputs) == [
        "batching.enabled: input 'scale' has shape [], but batching needs every input's first dimension to "
        "be -1 (the batch): make it [-1, ...] or set batching.enabled: false",
        "batching.enabled: input 'image' has shape [3, 32, 32], but batching needs every input's first "
        "dimension to be -1 (the batch): make it [-1, ...] or set batching.enabled: false",
    ]
    assert parse_manifest({**MINIMAL, "inputs": inputs, "batching": False}).batching["enabled"] is False


def test_versions_published_before_batching_get_the_defaults():
    assert batching_settings(None) == DEFAULTS
    assert batching_settings({"enabled": True, "max_batch_size": 8})["max_batch_size"] == 8


def spec(cpus: float = 1.0, gpu: str = "0", batching: dict | None = None, inputs: dict | None = None):
    return ServeSpec("m", "1.0.0", "0" * 64, Path("/pkg"), "onnx", "model.onnx", None,
                     inputs if inputs is not None else {"x": {"dtype": "float32", "shape": [-1, 4]}}, {},
                     cpus=cpus, gpu=gpu, batching=batching or {})  # fmt: skip


@pytest.mark.parametrize(
    "cpus, machine, plan",
    [(0.5, 8, (1, 1)), (1, 8, (1, 1)), (2.5, 8, (2, 1)), (4, 8, (4, 1)), (16, 4, (4, 1)), (1, 1, (1, 1))],
)
def test_workers_follow_the_cpu_limit_and_the_machine(cpus, machine, plan):
    workers, threads = serving_plan(spec(cpus), machine_cpus=machine)
    assert (workers, threads) == plan
    assert workers * threads <= max(1, min(cpus, machine))


def test_a_gpu_model_runs_one_worker_with_the_cpus_as_threads():
    assert serving_plan(spec(4, gpu="1"), machine_cpus=8) == (1, 4)


def test_workers_can_be_set_and_threads_share_the_limit():
    assert serving_plan(spec(4), workers=2, machine_cpus=8) == (2, 2)
    assert serving_plan(spec(1), workers=3, machine_cpus=8) == (3, 1)


def _assigned(source: str) -> dict:
    """The module-level `NAME = json.loads('...')` values of a generated service."""
    import json

    tree = ast.parse(source)
    return {node.targets[0].id: json.loads(node.value.args[0].value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args
            and isinstance(node.value.args[0], ast.Constant)}  # fmt: skip


def test_the_service_gets_the_workers_threads_and_batching_of_its_spec():
    batching = {"enabled": True, "max_batch_size": 16, "max_latency_ms": 5}
    source = render_service(spec(2, batching=batching))
    values = _assigned(source)
    assert values["BATCHING"] == {**batching, "inputs": ["x"]}
    assert values["LOAD_ARGS"]["threads"] == 1
    assert "workers=2," in source and "batching=BATCHING" in source
    # BentoML's per-request OpenTelemetry span (kept by no one at its sample rate 0) is skipped
    assert "tracing={\"excluded_urls\": ['/predict', '/aidhub-tensors/predict', '/aidhub/calls']}," in source
    assert "workers=1," in render_service(spec(2), workers=1)


def test_batching_stays_off_when_an_input_has_no_batch_dimension():
    inputs = {"x": {"dtype": "float32", "shape": [-1, 4]}, "scale": {"dtype": "float32", "shape": []}}
    assert batching_options(spec(batching={"enabled": True}, inputs=inputs))["enabled"] is False
    assert batching_options(spec(batching={"enabled": True}, inputs={}))["enabled"] is False
    assert batching_options(spec(batching={"enabled": True}))["enabled"] is True
    assert batching_options(spec())["enabled"] is False

"""Adaptive batching in the model server (runners/flavors/batching.py) with real asyncio, real numpy
and a small real model: a linear layer with a per-row softmax, written in numpy."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runners.flavors.batching import Batcher, batch_rows, join_inputs, split_outputs
from runners.flavors.convert import InputError
from runners.flavors.serving import Dispatcher

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
MODEL_CALLS: list[int] = []  # rows of each call the model got


def softmax_model(inputs: dict) -> dict:
    """A real row-wise model: [-1, 4] float32 -> probabilities [-1, 3] and the argmax label [-1]."""
    x = np.asarray(inputs["x"], dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 4:
        raise InputError(f"Input 'x' must have shape [-1, 4], got {list(x.shape)}.")
    MODEL_CALLS.append(len(x))
    time.sleep(0.01)  # like a real model's compute: others queue up meanwhile
    logits = x @ WEIGHTS
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    return {"probabilities": probabilities.tolist(), "label": probabilities.argmax(axis=1).tolist()}


def rows(seed: int, count: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, 4)).round(3).tolist()


def same_answers(answers: list, expected: list) -> bool:
    """Labels equal; probabilities equal but for float32 rounding (a matrix product over more rows
    may sum in another order, as any batching server's does)."""
    return len(answers) == len(expected) and all(
        a["label"] == e["label"] and np.allclose(a["probabilities"], e["probabilities"], rtol=1e-6, atol=1e-7)
        for a, e in zip(answers, expected, strict=True)
    )


def in_threads(pool: ThreadPoolExecutor):
    async def run(predict, inputs):
        return await asyncio.get_running_loop().run_in_executor(pool, predict, inputs)

    return run


def serve(calls: list[dict], **settings) -> tuple[list, list[int]]:
    """Every call made at once to one Batcher; (each caller's outcome, rows of each model call)."""
    MODEL_CALLS.clear()

    async def scenario():
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(softmax_model, ["x"], in_threads(pool), **settings)
            return await asyncio.gather(*(batcher(c) for c in calls), return_exceptions=True)

    return asyncio.run(scenario()), list(MODEL_CALLS)


def test_concurrent_callers_each_get_their_own_rows_equal_to_unbatched():
    calls = [{"x": rows(seed, 1 + seed % 3)} for seed in range(20)]
    expected = [softmax_model(c) for c in calls]
    answers, model_calls = serve(calls, max_batch_size=16)
    assert same_answers(answers, expected)
    assert sum(model_calls) == sum(len(c["x"]) for c in calls)
    assert max(model_calls) > 3  # rows of several callers ran as one call
    assert max(model_calls) <= 16


def test_numpy_arrays_and_lists_join_in_one_batch():
    calls = [{"x": np.asarray(rows(1, 2), dtype=np.float32)}, {"x": rows(2, 3)}, {"x": rows(3, 1)}]
    expected = [softmax_model(c) for c in calls]
    answers, model_calls = serve(calls)
    assert same_answers(answers, expected) and model_calls[-1] > 2


def test_a_bad_call_fails_alone_and_the_others_are_answered():
    bad = {"x": [[1.0, 2.0]]}  # two columns instead of four
    calls = [{"x": rows(1, 2)}, bad, {"x": rows(2, 1)}, {"x": rows(3, 2)}]
    answers, _ = serve(calls)
    assert isinstance(answers[1], InputError)
    assert "Input 'x' must have shape [-1, 4], got [1, 2]." == str(answers[1])
    assert same_answers([answers[i] for i in (0, 2, 3)], [softmax_model(calls[i]) for i in (0, 2, 3)])


def test_calls_that_cannot_join_run_alone():
    calls = [{"x": rows(1, 40)}, {"x": rows(2, 1), "extra": [1]}, {"x": []}, {"x": rows(3, 1)}]
    answers, model_calls = serve(calls[:1] + calls[3:], max_batch_size=32)
    assert same_answers(answers, [softmax_model(calls[0]), softmax_model(calls[3])])
    assert sorted(model_calls) == [1, 40]  # 40 rows > max_batch_size: never joined
    assert batch_rows(calls[1], ["x"]) is None and batch_rows(calls[2], ["x"]) is None


def test_outputs_without_a_row_per_input_row_turn_batching_off():
    def total(inputs: dict) -> dict:
        time.sleep(0.01)
        return {"total": float(np.asarray(inputs["x"]).sum())}  # one value per call, not per row

    async def scenario():
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(total, ["x"], in_threads(pool))
            calls = [{"x": [[float(i)]]} for i in range(6)]
            return await asyncio.gather(*(batcher(c) for c in calls)), batcher.enabled

    answers, enabled = asyncio.run(scenario())
    assert answers == [{"total": float(i)} for i in range(6)] and enabled is False


def test_a_lone_caller_does_not_wait_for_company():
    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(softmax_model, ["x"], in_threads(pool), max_latency_ms=1000)
            await asyncio.gather(*(batcher({"x": rows(i, 1)}) for i in range(4)))  # a concurrent batch
            started = time.perf_counter()
            await batcher({"x": rows(9, 1)})
            first = time.perf_counter() - started
            started = time.perf_counter()
            await batcher({"x": rows(10, 1)})
            return first, time.perf_counter() - started

    after_concurrent, alone = asyncio.run(scenario())
    assert 0.9 < after_concurrent < 1.5  # after a batch of 4 it waited for company, max_latency_ms
    assert alone < 0.5  # the last batch held one call: no waiting at all


def test_a_cancelled_caller_leaves_the_batch_to_the_others():
    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(softmax_model, ["x"], in_threads(pool))
            first = asyncio.ensure_future(batcher({"x": rows(1, 1)}))  # runs alone, holds the model
            await asyncio.sleep(0)
            leaving = asyncio.ensure_future(batcher({"x": rows(2, 1)}))
            staying = asyncio.ensure_future(batcher({"x": rows(3, 1)}))
            await asyncio.sleep(0)
            leaving.cancel()
            return await first, await staying, leaving.cancelled()

    first, staying, cancelled = asyncio.run(scenario())
    expected = [softmax_model({"x": rows(1, 1)}), softmax_model({"x": rows(3, 1)})]
    assert same_answers([first, staying], expected)
    assert cancelled


def test_dispatcher_batches_only_when_enabled_with_inputs():
    assert Dispatcher(softmax_model).batcher is None
    assert Dispatcher(softmax_model, batching={"enabled": True, "inputs": []}).batcher is None
    dispatch = Dispatcher(softmax_model, batching={"enabled": True, "inputs": ["x"], "max_batch_size": 8})
    assert (dispatch.batcher.max_batch_size, dispatch.batcher.max_latency_s) == (8, 0.01)

    async def scenario():
        return await asyncio.gather(*(dispatch({"x": rows(i, 2)}) for i in range(8)))

    MODEL_CALLS.clear()
    assert same_answers(asyncio.run(scenario()), [softmax_model({"x": rows(i, 2)}) for i in range(8)])
    assert MODEL_CALLS[:2] == [8, 8]  # four callers' two rows each, twice


def test_join_and_split_are_inverse():
    calls = [{"a": [[1, 2]], "b": ["x"]}, {"a": [[3, 4], [5, 6]], "b": ["y", "z"]}]
    joined = join_inputs(calls, ["a", "b"])
    assert joined == {"a": [[1, 2], [3, 4], [5, 6]], "b": ["x", "y", "z"]}
    assert split_outputs(joined, [1, 2]) == calls


@pytest.mark.parametrize("value", [[], 3, "abc", np.float32(1.0), np.zeros(())])
def test_values_without_a_first_dimension_cannot_join(value):
    assert batch_rows({"x": value}, ["x"]) is None


def test_stopping_fails_the_waiting_callers_instead_of_leaving_them_hanging():
    started, release = threading.Event(), threading.Event()

    def held_model(inputs: dict) -> dict:
        started.set()
        release.wait(5)
        return softmax_model(inputs)

    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(held_model, ["x"], in_threads(pool))
            first = asyncio.ensure_future(batcher({"x": rows(0, 1)}))
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)  # in the model
            queued = [asyncio.ensure_future(batcher({"x": rows(i, 1)})) for i in (1, 2)]
            await asyncio.sleep(0)
            batcher._drainer.cancel()  # as the server's loop does at shutdown
            release.set()
            return await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), 5)

    outcomes = asyncio.run(scenario())
    assert [str(o) for o in outcomes] == ["The server is stopping."] * 3

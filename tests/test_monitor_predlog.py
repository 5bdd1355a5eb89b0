"""The prediction log against a real SQLite file and a real PostgreSQL database."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from playhouse.db_url import connect

from monitor.predlog import PredictionLog, PredictionRecord, encode_payload, new_prediction_id
from monitor.rollups import bucket_of
from monitor.tables import LatencyBucket, Prediction, Rollup

T0 = datetime(2025, 3, 1, 12, 0, 0)


def rec(i: int = 0, **changes) -> PredictionRecord:
    values = dict(version_id=1 + i % 3, model="iris", version="1.0.0", latency_ms=1.0 + i % 250,
                  status="error" if i % 7 == 0 else "ok", inputs={"x": [i, i + 1]},
                  outputs={"label": ["setosa"]}, created_at=T0 + timedelta(seconds=i % 180))  # fmt: skip
    return PredictionRecord(**(values | changes))


def count_predictions(db) -> int:
    with db.connection_context():
        return Prediction.select().count()


def recomputed_rollups() -> tuple[dict, Counter]:
    rollups: dict = {}
    buckets: Counter = Counter()
    for p in Prediction.select():
        minute = p.created_at.replace(second=0, microsecond=0)
        row = rollups.setdefault((p.version_id, minute), [0, 0, 0.0])
        row[0] += 1
        row[1] += p.status == "error"
        row[2] += p.latency_ms
        buckets[(p.version_id, minute, bucket_of(p.latency_ms))] += 1
    return rollups, buckets


def stored_rollups() -> tuple[dict, Counter]:
    rollups = {(r.version_id, r.minute): [r.requests, r.errors, r.latency_sum_ms] for r in Rollup}
    buckets = Counter({(b.version_id, b.minute, b.bucket): b.count for b in LatencyBucket})
    return rollups, buckets


def test_records_from_many_threads_land_exactly_once_with_matching_rollups(db):
    with PredictionLog(db, flush_interval=0.05, max_batch=300) as plog:
        threads = [
            threading.Thread(target=lambda k=k: [plog.record(rec(k * 1000 + i)) for i in range(500)])
            for k in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert plog.flush() is True
        assert plog.queued == 0
    assert Prediction.select().count() == 4000
    assert sum(r.requests for r in Rollup) == 4000
    assert stored_rollups() == recomputed_rollups()


def test_background_thread_writes_within_one_second_without_flush(db):
    with PredictionLog(db) as plog:
        started = time.monotonic()
        for i in range(3):
            plog.record(rec(i))
        while count_predictions(db) < 3 and time.monotonic() - started < 1.0:
            time.sleep(0.02)
        assert count_predictions(db) == 3
        assert time.monotonic() - started < 1.0


def test_close_flushes_and_stops_the_thread(db):
    plog = PredictionLog(db, flush_interval=60)
    ids = [plog.record(rec(i)) for i in range(5)]
    assert plog.close() is True
    assert not plog._thread.is_alive()
    assert sorted(p.id for p in Prediction.select()) == sorted(ids)


def test_record_after_close_is_written_by_flush_on_the_calling_thread(db):
    plog = PredictionLog(db, flush_interval=60)
    plog.close()
    plog.record(rec(1))
    assert plog.flush() is True
    assert Prediction.select().count() == 1


def test_stored_row_keeps_every_field(db):
    record = rec(3, status="error", error="boom", source="direct", latency_ms=12.5)
    with PredictionLog(db, flush_interval=60) as plog:
        plog.record(record)
        plog.flush()
    row = Prediction.get_by_id(record.id)
    assert (row.version_id, row.model, row.version, row.status, row.error, row.source) == (
        1, "iris", "1.0.0", "error", "boom", "direct",
    )  # fmt: skip
    assert (row.created_at, row.latency_ms, row.truncated) == (T0 + timedelta(seconds=3), 12.5, False)
    assert (row.inputs, row.outputs) == ('{"x":[3,4]}', '{"label":["setosa"]}')


def test_created_at_comes_from_the_clock_when_missing(db):
    clock = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()
    with PredictionLog(db, flush_interval=60, clock=lambda: clock) as plog:
        plog.record(rec(1, created_at=None))
        plog.flush()
    assert Prediction.get().created_at == datetime(2025, 5, 6, 7, 8, 9)
    assert Rollup.get().minute == datetime(2025, 5, 6, 7, 8)


def test_payloads_past_the_cap_become_a_marker(db):
    record = rec(1, inputs={"x": "é" * 60}, outputs={"y": 1})
    with PredictionLog(db, flush_interval=60, payload_cap=100) as plog:
        plog.record(record)
        plog.flush()
    row = Prediction.get_by_id(record.id)
    assert row.inputs == '{"_truncated": true, "bytes": 128}'
    assert row.outputs == '{"y":1}'
    assert row.truncated is True


def test_encode_payload_counts_bytes_not_characters():
    assert encode_payload({"x": "a" * 92}, 100) == ('{"x":"' + "a" * 92 + '"}', False)
    assert encode_payload({"x": "a" * 93}, 100) == ('{"_truncated": true, "bytes": 101}', True)
    assert encode_payload(None, 100) == (None, False)


def test_failing_write_keeps_rows_until_the_table_is_back(db, caplog):
    with PredictionLog(db, flush_interval=60) as plog:
        Prediction.drop_table()
        ids = [plog.record(rec(i)) for i in range(10)]
        assert plog.flush(timeout=10) is False
        assert plog.queued == 10
        assert "prediction log write failed; 10 rows kept for the next try" in caplog.text
        assert Rollup.select().count() == 0
        Prediction.create_table()
        assert plog.flush(timeout=10) is True
        assert plog._thread.is_alive()
    assert sorted(p.id for p in Prediction.select()) == sorted(ids)
    assert sum(r.requests for r in Rollup) == 10


def test_big_batches_are_written_where_offload_says_small_ones_where_the_writer_is(db):
    """`aid serve` passes gevent's native thread (hub/serving.py native_thread); a plain executor's
    thread stands in for it. Past OFFLOAD_FROM_BYTES of payload a batch's transaction runs there (and
    a failure there is kept for the next try); smaller ones run on the log's own thread."""
    writers: list[str] = []

    def on_thread(work):
        def marked():
            writers.append(threading.current_thread().name)
            return work()

        return pool.submit(marked).result()

    big = {"x": [0.5] * 2500}  # ~10 KB of JSON: 60 rows pass 512 KiB
    with ThreadPoolExecutor(1, thread_name_prefix="db-writer") as pool:
        with PredictionLog(db, flush_interval=60, offload=on_thread) as plog:
            Prediction.drop_table()
            ids = [plog.record(rec(i, inputs=big)) for i in range(60)]
            assert plog.flush(timeout=10) is False and plog.queued == 60
            Prediction.create_table()
            assert plog.flush(timeout=10) is True
            assert writers == ["db-writer_0", "db-writer_0"]
            plog.write_rows_now([plog._row(rec(99))])  # small: here
            assert len(writers) == 2
        assert pool.submit(db.is_closed).result()  # closed on its own thread when the log closed
    assert Prediction.select().count() == len(ids) + 1


def test_a_batch_is_written_once_its_payloads_pass_batch_bytes_and_no_batch_holds_much_more(db):
    """Image-sized inputs are written in pieces of about `batch_bytes`, before the flush interval: one
    write of all that queued in half a second (13 MB at heavy-onnx's c=16) stalled the hub's loop."""
    written: list[int] = []

    def on_thread(work):
        before = pool.submit(Prediction.select().count).result()
        pool.submit(work).result()
        written.append(pool.submit(Prediction.select().count).result() - before)

    big = {"x": [0.5] * 2500}  # ~10 KB of JSON a row
    with ThreadPoolExecutor(1) as pool:
        with PredictionLog(db, flush_interval=60, batch_bytes=600_000, offload=on_thread) as plog:
            for i in range(50):  # ~500 KB: below batch_bytes, so it waits for the interval
                plog.record(rec(i, inputs=big))
            time.sleep(0.3)
            assert plog.queued == 50 and written == []
            for i in range(50, 130):
                plog.record(rec(i, inputs=big))
            started = time.monotonic()
            while count_predictions(db) < 130 and time.monotonic() - started < 5:
                time.sleep(0.02)
            assert count_predictions(db) == 130  # without flush(): a batch was due, then the rest went too
            assert len(written) >= 2  # the ~1.3 MB in batches of ~600 KB
            assert all(rows <= 59 for rows in written)  # within batch_bytes (60 rows: ~602 KB)
    assert count_predictions(db) == 130


def test_full_queue_drops_the_oldest_rows(db, caplog):
    with PredictionLog(db, flush_interval=60, max_queue=5) as plog:
        ids = [plog.record(rec(i)) for i in range(8)]
        assert plog.dropped == 3
        assert plog.flush() is True
    assert sorted(p.id for p in Prediction.select()) == sorted(ids[3:])
    assert "prediction log full (5 rows waiting): 1 rows dropped so far, oldest first" in caplog.text


def test_find_pending_sees_a_queued_prediction(db):
    with PredictionLog(db, flush_interval=60) as plog:
        record = rec(2)
        plog.record(record)
        assert plog.find_pending(record.id)["version_id"] == 3
        assert plog.find_pending("nope") is None


def test_record_rejects_an_unknown_status():
    plog = PredictionLog.__new__(PredictionLog)
    plog.payload_cap, plog.clock = 100, time.time
    with pytest.raises(ValueError, match="status must be one of"):
        plog._row(rec(1, status="fine"))


def test_prediction_log_needs_the_bound_database(tmp_path):
    other = connect(f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(ValueError, match=r"call database.connection.database.initialize\(db\)"):
        PredictionLog(other)


def test_prediction_ids_are_26_chars_and_sort_by_time():
    ids = [new_prediction_id(1_700_000_000 + i) for i in range(100)]
    assert all(len(i) == 26 for i in ids)
    assert ids == sorted(ids)
    assert new_prediction_id(0).startswith("0000000000")

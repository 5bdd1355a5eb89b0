"""The review queue's selection pass (roles: `ReviewSelection`, `Selector`): every EVERY_S seconds it
judges the live calls logged since its cursor and queues the ones worth a human look
(monitor/reviews.py). docs/review.md says how, for users.

A call is judged once it is SETTLE old, so that its shadow's answer (logged after it) is there to
compare. Per call, the first reason that holds names it and the largest score orders it:
disagreement (the shadow version answered another label), drift (a value of a column the version's
latest drift run found drifted lies outside the reference's range), low confidence (the model's own
probabilities, by the model's measure and threshold). Then at most `per_minute` items per version
per minute of calls (the most doubtful of that minute), and none while `max_waiting` wait.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.periodic import Periodic, after_callers
from monitor import driftruns, reviews
from monitor import reviewscore as score
from monitor.reviews import Candidate, ReviewReason, Rules
from monitor.tables import Prediction
from registry.models import VersionRow
from vocab.times import minute_of, utcnow

log = logging.getLogger(__name__)
EVERY_S = 30.0  # AIDHUB_REVIEW_EVERY
SETTLE = timedelta(seconds=20)  # AIDHUB_REVIEW_SETTLE: shadow answers and direct calls are logged after it
FIRST_LOOK = timedelta(hours=1)  # a hub's first pass judges the last hour, not the whole log
BATCH = 2000  # calls judged per pass at most; the next pass goes on from there
PAGE = 250  # calls read and judged at once: ~8 ms of the event loop's time with image-sized inputs
DEFAULTS = Rules()  # a model's rules until it sets its own (PUT .../review/rules)


@dataclass
class Facts:
    """What judging a version's calls needs, read once per pass."""

    labels: tuple[str, ...]
    inputs: dict
    probability: str | None  # the output with class probabilities
    rules: Rules
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # drifted column -> range


class ReviewSelection(Periodic):
    name = "review-selection"
    failure = "Choosing predictions for review failed"
    interval = EVERY_S

    def __init__(self, select) -> None:
        super().__init__()
        self.select = select

    def run_once(self) -> dict[str, int]:
        return self.select()


class Selector:
    """One pass at a time per hub process; reference ranges are kept per drift run."""

    def __init__(self, folder_of, reference_rows: int, default: Rules = DEFAULTS, settle: timedelta = SETTLE):
        self.folder_of = folder_of  # VersionRow -> its package folder
        self.reference_rows = reference_rows
        self.settle = settle
        self.default = default
        self.lock = threading.Lock()
        self.ranges: dict[int, dict[str, tuple[float, float]]] = {}  # drift run id -> reference ranges

    def run(self, now: datetime | None = None) -> dict[str, int]:
        """Judge the calls logged since the cursor; the items added, by model. Calls are read and
        judged PAGE at a time, the callers served between pages (`after_callers`)."""
        now = now or utcnow()
        with self.lock:
            after = reviews.cursor() or reviews.id_at(now - FIRST_LOOK)
            facts: dict[int, Facts | None] = {}
            found: list[Candidate] = []
            last, seen = after, 0
            while seen < BATCH:
                calls = reviews.new_calls(last, now - self.settle, min(PAGE, BATCH - seen))
                if not calls:
                    break
                found += self._judge_page(calls, facts)
                seen, last = seen + len(calls), calls[-1].id
                if len(calls) < PAGE:
                    break
                after_callers()
            added = self._sample(found, facts)
            # A full batch goes on from its last call; else every call up to `settle` ago was judged, and
            # the next scan starts there (not at a failed or shadow call it would walk past each time).
            full = seen == BATCH
            reviews.move_cursor(last if full else max(after, reviews.id_at(now - self.settle)))
        return added

    def _judge_page(self, calls: list[Prediction], facts: dict[int, Facts | None]) -> list[Candidate]:
        ids = [c.id for c in calls]
        shadows, done = reviews.shadows_of(ids), reviews.queued(ids)  # never the same call twice
        fresh = [c for c in calls if c.id not in done]
        inputs = reviews.inputs_of([c.id for c in fresh if self._drifted(c.version_id, facts)])
        judged = (self._judge(c, shadows.get(c.id), inputs.get(c.id), facts) for c in fresh)
        return [c for c in judged if c is not None]

    def _facts(self, version_id: int, cache: dict[int, Facts | None]) -> Facts | None:
        if version_id not in cache:
            version = VersionRow.get_or_none(VersionRow.id == version_id)
            cache[version_id] = self._read_facts(version) if version else None
        return cache[version_id]

    def _drifted(self, version_id: int, cache: dict[int, Facts | None]) -> bool:
        """Whether the version's calls are judged against drifted columns (their inputs are read)."""
        found = self._facts(version_id, cache)
        return found is not None and bool(found.bounds)

    def _read_facts(self, version: VersionRow) -> Facts | None:
        labels = tuple(version.manifest.get("labels") or ())
        if not labels:
            return None  # a label is what a reviewer gives: nothing to review without them
        rules = reviews.rules_of(version.model.name, self.default)
        found = Facts(
            labels, version.inputs or {}, score.probability_output(version.outputs or {}, labels), rules
        )
        found.bounds = self._bounds(version)
        return found

    def _bounds(self, version: VersionRow) -> dict[str, tuple[float, float]]:
        run = driftruns.latest_run(version.id, done_only=True)
        result = driftruns.result_of(run) if run else None
        columns = (result or {}).get("inputs", {}).get("columns") or []
        drifted = {c["column"] for c in columns if c.get("drifted")}
        if not drifted:
            return {}
        if run.id not in self.ranges:
            self.ranges = {run.id: score.ranges(self._reference(version, drifted), drifted), **self.ranges}
            self.ranges = dict(list(self.ranges.items())[:100])
        return self.ranges[run.id]

    def _reference(self, version: VersionRow, wanted: set[str]) -> list[dict[str, float]]:
        """The rows the drift run compared with: the package's reference data, else the first calls."""
        name = version.manifest.get("reference_data")
        path = self.folder_of(version) / name if name else None
        if path is not None and path.is_file():
            return score.csv_rows(path, wanted)
        first = driftruns.first_payloads(version.id, self.reference_rows).inputs
        rows = [score.columns(row, version.inputs or {}) for row in first]
        return [row for row in rows if row]

    def _judge(
        self, call: Prediction, shadow: Prediction | None, inputs: str | None, cache
    ) -> Candidate | None:
        """`inputs`: the call's logged inputs where its version has drifted columns, else None."""
        facts = self._facts(call.version_id, cache)
        outputs = _parsed(call.outputs)
        if facts is None or not isinstance(outputs, dict) or not outputs:
            return None
        probs = score.probabilities(outputs, facts.probability)
        answer = score.answer_label(outputs, probs, facts.labels)
        if answer is None:
            return None  # several items, or no label: one label cannot correct it
        reasons = [
            (ReviewReason.DISAGREEMENT, self._disagreement(answer, shadow, cache)),
            (ReviewReason.DRIFT, self._drift(inputs, facts)),
            (ReviewReason.LOW_CONFIDENCE, _low_confidence(probs, facts.rules)),
        ]
        held = [(reason, d) for reason, d in reasons if d is not None]
        if not held:
            return None
        detail = "; ".join(d.text for _, d in held)
        return Candidate(call, held[0][0], max(d.score for _, d in held), detail, answer)

    def _disagreement(self, answer: str, shadow: Prediction | None, cache) -> score.Doubt | None:
        facts = self._facts(shadow.version_id, cache) if shadow else None
        outputs = _parsed(shadow.outputs) if shadow else None
        if facts is None or not isinstance(outputs, dict) or not outputs:
            return None
        other = score.answer_label(outputs, score.probabilities(outputs, facts.probability), facts.labels)
        if other is None or other == answer:
            return None
        return score.Doubt(1.0, f"{shadow.version} (shadow) answered {other}")

    def _drift(self, inputs: str | None, facts: Facts) -> score.Doubt | None:
        if not facts.bounds:
            return None
        item = score.columns(_parsed(inputs), facts.inputs)
        return score.outside(item, facts.bounds) if item else None

    def _sample(self, found: list[Candidate], cache) -> dict[str, int]:
        """At most `per_minute` per version and minute of calls, the most doubtful first, while fewer
        than `max_waiting` of the model's items wait."""
        minutes: dict[tuple[int, datetime], list[Candidate]] = defaultdict(list)
        for c in found:
            minutes[(c.prediction.version_id, minute_of(c.prediction.created_at))].append(c)
        room: dict[str, int] = {}
        chosen: list[Candidate] = []
        for (version_id, minute), group in sorted(minutes.items(), key=lambda kv: kv[0][1]):
            rules = cache[version_id].rules
            free = rules.per_minute - reviews.taken_in_minute(version_id, minute)
            for c in sorted(group, key=lambda c: -c.score)[: max(free, 0)]:
                model = c.prediction.model
                room.setdefault(model, rules.max_waiting - reviews.waiting_count(model))
                if room[model] > 0:
                    chosen.append(c)
                    room[model] -= 1
        reviews.add(chosen)
        added: dict[str, int] = defaultdict(int)
        for c in chosen:
            added[c.prediction.model] += 1
        return dict(added)


def _low_confidence(probs: list[float] | None, rules: Rules) -> score.Doubt | None:
    return score.doubt(probs, rules.measure, rules.threshold) if probs else None


def _parsed(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

"""Alert rows to the plain dicts the API returns, the CLI prints, the pages render and webhooks get.

Pure, as hub/present.py: the rows are loaded by the use cases in hub/alerts.py.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from vocab.alerts import SEVERITY, AlertState, say_duration
from vocab.times import isoformat


def _span(seconds: int) -> str:
    return say_duration(timedelta(seconds=seconds))


def rule(row, states: list, hub_secret: bool) -> dict:
    """A rule with its state per serving version; `state` is the gravest of them (ok without any).
    `hub_secret`: the hub signs every webhook (AIDHUB_WEBHOOK_SECRET). The secret is never shown."""
    gravest = min(states, key=lambda s: SEVERITY.index(AlertState(s.state)), default=None)
    return {
        "id": row.id, "condition": row.condition, "metric": row.metric, "op": row.op,
        "threshold": row.threshold, "for": _span(row.for_seconds), "window": _span(row.window_seconds),
        "webhook": row.webhook, "signed": bool(row.webhook and (row.secret or hub_secret)),
        "source": row.source, "created_at": isoformat(row.created_at), "action": row.action,
        "state": gravest.state if gravest else AlertState.OK.value,
        "since": isoformat(gravest.since) if gravest else None,
        "versions": [status(s) for s in states],
    }  # fmt: skip


def status(row) -> dict:
    return {"version": row.version, "state": row.state, "since": isoformat(row.since), "value": row.value,
            "checked_at": isoformat(row.checked_at)}  # fmt: skip


def event(row, attempts: list) -> dict:
    """One state change, with its webhook delivery and every attempt at it, and what the rule's action
    did on it (`outcome`: 'rolled production back to 1.0.0 (was 1.0.0=90,1.1.0=10)')."""
    return {
        "id": row.id, "rule": row.rule_id, "condition": row.condition, "version": row.version,
        "previous": row.previous, "state": row.state, "value": row.value, "threshold": row.threshold,
        "at": isoformat(row.at), "delivery": row.delivery, "attempts": [attempt(a) for a in attempts],
        "action": row.action, "outcome": row.outcome,
    }  # fmt: skip


def attempt(row) -> dict:
    return {"number": row.number, "at": isoformat(row.at), "status": row.status_code, "error": row.error,
            "duration_ms": row.duration_ms}  # fmt: skip


def payload(row, rule_row, base_url: str) -> dict:
    """What the webhook is POSTed for one state change; `base_url` is the hub's public URL."""
    model, version = quote(row.model), quote(row.version, safe="")
    api = f"{base_url}/api/v1/models/{model}"
    return {
        "id": row.id, "model": row.model, "version": row.version,
        "rule": {"id": rule_row.id, "condition": rule_row.condition, "for": _span(rule_row.for_seconds),
                 "window": _span(rule_row.window_seconds)},
        "state": row.state, "previous": row.previous, "value": row.value, "threshold": row.threshold,
        "time": isoformat(row.at), "action": row.action, "outcome": row.outcome,
        "links": {"model": f"{base_url}/models/{model}?version={version}",
                  "scorecard": f"{api}/scorecard?version={version}", "alerts": f"{api}/alerts"},
    }  # fmt: skip

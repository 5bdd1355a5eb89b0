"""The alert rule grammar, written once: the registry checks `aid.yaml`'s `alerts:` with it at publish
time, the hub checks rules added through the API and the CLI, the monitor evaluates what it parsed.

A condition is `METRIC OP NUMBER` (`accuracy_low < 0.8`, `p95_ms > 250`, `error_rate >= 5%`) or
`no traffic for DURATION` (`no traffic for 10m`: fewer than 1 call in the last 10 minutes).
Metrics are read over the rule's window (default 1h) from the scorecard; `drift_share` is the share
of the latest finished drift run. A ratio may be written as a percentage (`80%` is 0.8).

A canary condition compares the canary version of a split alias (`aid alias NAME production
1.0.0=90,1.1.0=10`: 1.1.0) with its base (the largest share) over the window:
`canary_error_rate > base + 2%`, `canary_p95_ms > base + 50`, `canary_accuracy < base - 5%`. It is
judged only once both have CANARY_MIN_CALLS calls (CANARY_MIN_FEEDBACK judged feedback for accuracy)
in the window. Such a rule may take the action `rollback`: when it fires, the alias goes back to its base.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from vocab.times import parse_duration

METRICS = {
    "accuracy": "feedback accuracy over the window, the point estimate",
    "accuracy_low": "the Wilson 95% lower bound of that accuracy",
    "error_rate": "errors / calls over the window",
    "p95_ms": "the 95th percentile of latency over the window, in ms",
    "drift_share": "share of input columns that drifted in the latest drift run",
    "requests": "calls over the window",
}
CANARY_METRICS = {
    "canary_error_rate": "the canary's error rate, against its base's",
    "canary_p95_ms": "the canary's 95th percentile of latency in ms, against its base's",
    "canary_accuracy": "the canary's feedback accuracy, against its base's",
}
CANARY_EXAMPLES = {
    "canary_error_rate": "> base + 2%",
    "canary_p95_ms": "> base + 50",
    "canary_accuracy": "< base - 5%",
}
RATIOS = frozenset(
    {"accuracy", "accuracy_low", "error_rate", "drift_share", "canary_error_rate", "canary_accuracy"}
)
OPS = ("<", "<=", ">", ">=")
ACTIONS = ("rollback",)  # what a rule may do when it fires, besides the webhook
ROLLBACK = "rollback"
CANARY_MIN_CALLS = 20  # calls each of canary and base needs in the window before they are compared
CANARY_MIN_FEEDBACK = 20  # judged feedback each needs before their accuracies are compared
RULE_KEYS = ("when", "for", "window", "webhook", "action")
DEFAULT_WINDOW = timedelta(hours=1)
NO_TRAFFIC_RE = re.compile(r"no traffic for\s+(.+)", re.IGNORECASE)
CONDITION_RE = re.compile(r"(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>[<>=!]+)\s*(?P<number>\S+)")
CANARY_RE = re.compile(
    r"(?P<metric>canary_[A-Za-z0-9_]*)\s*(?P<op>[<>=!]+)\s*base(?:\s*(?P<sign>[+-])\s*(?P<number>\S+))?"
)
HOST_RE = re.compile(r"[A-Za-z0-9.:_-]+")  # a name, an IPv4 or (in brackets in the URL) an IPv6 address
SAY_METRICS = ", ".join([*METRICS, *CANARY_METRICS])
FORMS = f"write METRIC OP NUMBER (metrics: {', '.join(METRICS)}; operators: {' '.join(OPS)}), e.g. "
FORMS += "'accuracy_low < 0.8', 'no traffic for 10m', or compare a canary with its base: "
FORMS += "'canary_error_rate > base + 2%'"


class AlertState(StrEnum):
    """The state of one rule for one serving version."""

    OK = "ok"
    PENDING = "pending"  # the condition holds, not yet for the rule's `for`
    FIRING = "firing"
    RESOLVED = "resolved"  # it fired and stopped holding: an ok that remembers


class DeliveryState(StrEnum):
    """The webhook delivery of one state change."""

    NONE = "none"  # not delivered: no webhook, or a change that is not sent (to pending, to ok)
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


QUIET = frozenset({AlertState.OK, AlertState.RESOLVED})  # where a holding condition starts pending
SENT = frozenset({AlertState.FIRING, AlertState.RESOLVED})  # changes into these go to the webhook
SEVERITY = (AlertState.FIRING, AlertState.PENDING, AlertState.RESOLVED, AlertState.OK)


class ConditionInvalid(ValueError):
    """A rule that does not parse; `field` is the part at fault (when, for, window, webhook)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float
    text: str  # the condition as the hub writes it: 'accuracy_low < 0.8', 'no traffic for 10m'
    window: timedelta | None = None  # set by 'no traffic for N'
    # A canary condition's threshold is the margin over the base's value: 'canary_accuracy < base - 0.05'
    # is metric canary_accuracy, op <, threshold -0.05.


def is_canary(metric: str) -> bool:
    """Whether a metric compares the canary of a split alias with its base."""
    return metric in CANARY_METRICS


@dataclass(frozen=True)
class RuleSpec:
    condition: Condition
    for_: timedelta
    window: timedelta
    webhook: str | None
    action: str | None = None  # ACTIONS; None: only the webhook

    def to_dict(self) -> dict:
        """The rule as `aid.yaml` writes it (normalised); `action` only when it has one."""
        window = None if self.condition.window else say_duration(self.window)  # no traffic: its own
        rule = {"when": self.condition.text, "for": say_duration(self.for_), "window": window,
                "webhook": self.webhook}  # fmt: skip
        return rule | ({"action": self.action} if self.action else {})


def parse_rule(when, for_=None, window=None, webhook=None, action=None) -> RuleSpec:
    """A rule from its parts as written; ConditionInvalid naming the first part that is wrong."""
    condition = parse_condition(when)
    if condition.window is not None and window not in (None, ""):
        raise ConditionInvalid("window", f"'{condition.text}' sets its own window; leave out the window.")
    span = condition.window or (parse_span("window", window) if window not in (None, "") else DEFAULT_WINDOW)
    pause = timedelta(0) if for_ in (None, "", 0, "0") else parse_span("for", for_)
    return RuleSpec(condition, pause, span, check_webhook(webhook), check_action(action, condition))


def check_action(action, condition: Condition) -> str | None:
    """The rule's action: none, or `rollback` on a canary condition (it rolls the canary's alias back)."""
    if action in (None, ""):
        return None
    if action not in ACTIONS:
        raise ConditionInvalid("action", f"Unknown action {action!r}; use {', '.join(ACTIONS)} (or none).")
    if not is_canary(condition.metric):
        raise ConditionInvalid(
            "action", f"action {action!r} rolls a split alias back to its base, so it needs a canary "
            f"condition such as 'canary_error_rate > base + 2%', not '{condition.text}'.",
        )  # fmt: skip
    return action


def parse_condition(text) -> Condition:
    if not isinstance(text, str) or not text.strip():
        raise ConditionInvalid("when", f"The condition is missing or not text ({text!r}); {FORMS}.")
    text = " ".join(text.split())
    silence = NO_TRAFFIC_RE.fullmatch(text)
    if silence:
        span = parse_span("when", silence.group(1), f"{silence.group(1)!r} in {text!r}")
        return Condition("requests", "<", 1.0, f"no traffic for {say_duration(span)}", span)
    if text.startswith("canary_"):
        return _canary_condition(text)
    match = CONDITION_RE.fullmatch(text)
    if match is None:
        raise ConditionInvalid("when", f"Condition {text!r} is not understood; {FORMS}.")
    metric, op = match["metric"], match["op"]
    if metric not in METRICS:
        raise ConditionInvalid("when", f"Unknown metric {metric!r} in {text!r}; use one of {SAY_METRICS}.")
    if op not in OPS:
        raise ConditionInvalid("when", f"Unknown operator {op!r} in {text!r}; use one of {' '.join(OPS)}.")
    threshold = _threshold(metric, match["number"], text)
    return Condition(metric, op, threshold, f"{metric} {op} {threshold:g}")


def _canary_condition(text: str) -> Condition:
    """'canary_error_rate > base + 2%': the metric, the operator and the signed margin over the base."""
    match = CANARY_RE.fullmatch(text)
    metric = re.match(r"canary_[A-Za-z0-9_]*", text).group()
    if metric not in CANARY_METRICS:
        raise ConditionInvalid("when", f"Unknown metric {metric!r} in {text!r}; use one of {SAY_METRICS}.")
    if match is None:
        raise ConditionInvalid(
            "when", f"{metric} compares the canary with its base: write {metric} OP base [+|- NUMBER], "
            f"e.g. '{metric} {CANARY_EXAMPLES[metric]}', not {text!r}.",
        )  # fmt: skip
    if match["op"] not in OPS:
        raise ConditionInvalid(
            "when", f"Unknown operator {match['op']!r} in {text!r}; use one of {' '.join(OPS)}."
        )
    margin = _threshold(metric, match["number"], text) if match["number"] else 0.0
    margin = -margin if match["sign"] == "-" else margin
    said = f"{metric} {match['op']} base" + (f" {match['sign']} {abs(margin):g}" if margin else "")
    return Condition(metric, match["op"], margin, said)


def _threshold(metric: str, number: str, text: str) -> float:
    percent = number.endswith("%") and metric in RATIOS
    try:
        value = float(number.removesuffix("%") if percent else number)
    except ValueError:
        raise ConditionInvalid("when", f"{number!r} in {text!r} is not a number, e.g. 0.8 or 250.") from None
    value = value / 100 if percent else value
    if metric in RATIOS and not 0 <= value <= 1:
        raise ConditionInvalid(
            "when", f"{metric} is a ratio from 0 to 1; {number!r} in {text!r} is outside it (0.8 or 80%)."
        )
    if not 0 <= value < float("inf"):
        raise ConditionInvalid("when", f"{number!r} in {text!r} must be a number >= 0.")
    return value


def parse_span(field: str, text, what: str = "") -> timedelta:
    """A duration; ConditionInvalid naming `field` (and saying `what`, default "FIELD 'TEXT'")."""
    try:
        return parse_duration(str(text))
    except ValueError:
        what = what or f"{field} {text!r}"
        raise ConditionInvalid(
            field, f"{what} is not a duration; write minutes, hours or days, e.g. 10m, 1h or 1d."
        ) from None


def check_webhook(url) -> str | None:
    if url in (None, ""):
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    host = parts.hostname if parts else None
    if not host or parts.scheme not in ("http", "https") or not HOST_RE.fullmatch(host) or len(url) > 2000:
        raise ConditionInvalid(
            "webhook", f"webhook {url!r} is not an http(s) URL, e.g. https://hooks.example.com/aidhub."
        )
    return url


def say_duration(span: timedelta) -> str:
    """10 minutes -> '10m', 2 hours -> '2h', 1 day -> '1d', nothing -> '0'."""
    minutes = int(span.total_seconds() // 60)
    if minutes == 0:
        return "0"
    unit, size = next((u, n) for u, n in (("d", 1440), ("h", 60), ("m", 1)) if minutes % n == 0)
    return f"{minutes // size}{unit}"

"""The grammar of a weighted alias, written once: `1.0.0=90,1.1.0=10` sends 90 % of the alias's calls to
1.0.0 and 10 % to 1.1.0. The CLI passes the text on as it came; the hub parses and checks it here.

Weights are whole percentages from 1 to 100 that add up to exactly 100, so that a client key hashed
to a bucket 0-99 always lands on one version (`bucket`)."""

from __future__ import annotations

import hashlib

BUCKETS = 100
EXAMPLE = "1.0.0=90,1.1.0=10"


class WeightsInvalid(ValueError):
    """Weights that cannot be used as given; the message names the value and the fix."""


def is_weighted(text: str) -> bool:
    """Whether an alias target is a list of VERSION=WEIGHT (else it names one version or alias)."""
    return "=" in text


def parse_weights(text: str) -> dict[str, int]:
    """'1.0.0=90,1.1.0=10' -> {'1.0.0': 90, '1.1.0': 10}, in the order written."""
    weights: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        ref, sign, number = (s.strip() for s in part.partition("="))
        if not (ref and sign):
            raise WeightsInvalid(f"{part!r} is not VERSION=WEIGHT; write the weights as {EXAMPLE}.")
        if ref in weights:
            raise WeightsInvalid(f"Version {ref!r} is named twice in {text!r}; give each version once.")
        weights[ref] = _percent(ref, number)
    return check_weights(weights)


def check_weights(weights: dict) -> dict[str, int]:
    """The weights when they are whole percentages of 1-100 adding up to 100; else WeightsInvalid."""
    if not isinstance(weights, dict) or not weights:
        raise WeightsInvalid(f"Give the weights as VERSION=WEIGHT pairs adding up to 100, e.g. {EXAMPLE}.")
    checked = {str(ref): _percent(str(ref), weight) for ref, weight in weights.items()}
    total = sum(checked.values())
    if total != BUCKETS:
        raise WeightsInvalid(
            f"The weights {show(checked)} add up to {total}, not 100; change them so they do, e.g. {EXAMPLE}."
        )
    return checked


def _percent(ref: str, weight) -> int:
    number = weight if isinstance(weight, int) and not isinstance(weight, bool) else None
    if isinstance(weight, str) and weight.strip().isdigit():
        number = int(weight)
    if number is None or not 1 <= number <= BUCKETS:
        raise WeightsInvalid(
            f"The weight of {ref} is {weight!r}; give a whole percentage from 1 to 100, as in {EXAMPLE}."
        )
    return number


def show(weights: dict[str, int]) -> str:
    """{'1.0.0': 90, '1.1.0': 10} -> '1.0.0=90,1.1.0=10' (the form `parse_weights` reads)."""
    return ",".join(f"{ref}={weight}" for ref, weight in weights.items())


def bucket(client: str) -> int:
    """The bucket 0-99 of a client key: the same key lands in the same bucket in every hub process."""
    digest = hashlib.blake2b(client.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS

"""Proving from a v2 request's JSON text that its tensors' `data` lists hold nothing but numbers.

numpy reads a flat list of Python floats as float64 in one C pass (about 2 ms for an image's
150,528 values), but it would also read the string "1.5" as 1.5, None as nan and True as 1.0. Asking
every value its type (`set(map(type, data))`) costs as much again. The text answers it for less
(memchr in C, well under 1 ms for 3 MB), exactly, as `registry.tensors.numbers_only` does for the
native route; a v2 header also holds strings ("name", "datatype", an "id") and maybe true or false
(`binary_data_output`), so the proof counts what it sees in the parsed header outside the lists.

Why it is exact: every string in the text has two raw quotes (an escaped quote inside one only adds
more; a dropped duplicate key too). So when the text holds exactly two quotes per string counted
outside the lists, the lists hold no string, no string has an escaped quote, and the quotes pair up
in order. Outside strings, each `true` or `null` shows one "u" and each `false` one "a" (a number,
Infinity or a bracket none, NaN an "a", which makes the proof fail safe). So as many "u" and "a"
outside strings as the parsed header has outside the lists means the lists hold no bool or null.
"""

from __future__ import annotations


def only_numbers(text: bytes, header, lists: list[list]) -> bool:
    """Whether the `lists` (values inside `header`, the JSON value parsed from `text`) hold only
    numbers and lists, at any depth: no string, bool or null. False says only "not proven"."""
    skipped = {id(x) for x in lists}
    counts = [0, 0, 0]  # strings, true-or-null, false: outside the skipped lists
    _tally(header, skipped, counts)
    strings, u_tokens, a_tokens = counts
    quotes, at = [], text.find(b'"')
    while at != -1 and len(quotes) <= 2 * strings:
        quotes.append(at)
        at = text.find(b'"', at + 1)
    if len(quotes) != 2 * strings:
        return False
    outside = list(zip([0, *(q + 1 for q in quotes[1::2])], [*quotes[::2], len(text)], strict=True))
    return _occurrences(text, b"u", outside, u_tokens) == u_tokens and (
        _occurrences(text, b"a", outside, a_tokens) == a_tokens
    )


def _tally(header, skipped: set[int], counts: list[int]) -> None:
    """Add the strings (keys included), true-or-null and false in `header` to `counts`, skipping
    the lists whose id is in `skipped`. Only the small part of a header around the data is walked;
    with a stack, not recursion: JSON a thousand lists deep is still an answer, not a crash."""
    stack = [header]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            counts[0] += len(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            if id(value) not in skipped:
                stack.extend(value)
        elif isinstance(value, str):
            counts[0] += 1
        elif value is True or value is None:
            counts[1] += 1
        elif value is False:
            counts[2] += 1


def _occurrences(text: bytes, letter: bytes, spans: list[tuple[int, int]], limit: int) -> int:
    """How often `letter` occurs in the `spans` of `text`, counting no further than `limit` + 1
    (bytes.count does not use memchr and costs about 1 ms for 3 MB; find does)."""
    found = 0
    for start, end in spans:
        at = text.find(letter, start, end)
        while at != -1 and found <= limit:
            found += 1
            at = text.find(letter, at + 1, end)
        if found > limit:
            break
    return found

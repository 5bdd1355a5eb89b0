"""The weighted-alias grammar (vocab/weights.py) and how a split picks a route (hub/routes.py): pure."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hub.routes import Routes
from vocab.weights import WeightsInvalid, bucket, check_weights, is_weighted, parse_weights, show


def test_weights_are_read_in_the_order_written_and_shown_back_the_same():
    weights = parse_weights(" 1.1.0=10 , 1.0.0=90")
    assert list(weights.items()) == [("1.1.0", 10), ("1.0.0", 90)]
    assert show(weights) == "1.1.0=10,1.0.0=90"
    assert is_weighted("1.0.0=100") and not is_weighted("1.0.0") and not is_weighted("production")


@pytest.mark.parametrize(
    "text, message",
    [
        ("1.0.0=90,1.1.0=20", "The weights 1.0.0=90,1.1.0=20 add up to 110, not 100; change them so they do, "
         "e.g. 1.0.0=90,1.1.0=10."),
        ("1.0.0=90,1.1.0", "'1.1.0' is not VERSION=WEIGHT; write the weights as 1.0.0=90,1.1.0=10."),
        ("1.0.0=90,1.1.0=ten", "The weight of 1.1.0 is 'ten'; give a whole percentage from 1 to 100, as in "
         "1.0.0=90,1.1.0=10."),
        ("1.0.0=100,1.1.0=0", "The weight of 1.1.0 is '0'; give a whole percentage from 1 to 100"),
        ("1.0.0=50,1.0.0=50", "Version '1.0.0' is named twice in '1.0.0=50,1.0.0=50'; give each version "
         "once."),
    ],
)  # fmt: skip
def test_bad_weights_are_refused_naming_the_value_and_the_fix(text, message):
    with pytest.raises(WeightsInvalid) as caught:
        parse_weights(text)
    assert str(caught.value).startswith(message)


def test_weights_as_json_must_be_whole_numbers():
    assert check_weights({"1.0.0": 60, "1.1.0": 40}) == {"1.0.0": 60, "1.1.0": 40}
    for bad in ({"1.0.0": 60.5, "1.1.0": 39.5}, {"1.0.0": True, "1.1.0": 99}, {}, ["1.0.0"]):
        with pytest.raises(WeightsInvalid):
            check_weights(bad)


def test_a_client_key_has_one_bucket_and_keys_spread_over_all_of_them():
    assert bucket("client-7") == bucket("client-7")
    buckets = [bucket(f"client-{i}") for i in range(2000)]
    assert set(buckets) == set(range(100))
    assert 5 <= sum(b < 10 for b in buckets) / 20 <= 15  # about 10 % land below 10


def test_a_split_gives_each_route_its_buckets():
    def load():
        return [
            (SimpleNamespace(model="m", version=v), lambda v=v: f"http://{v}", w)
            for v, w in (("a", 90), ("b", 10))
        ]

    split = Routes().get(("m", "production"), load)
    assert split.bounds == (90, 100)
    assert [split.pick(b).url for b in (0, 89, 90, 99)] == ["http://a", "http://a", "http://b", "http://b"]

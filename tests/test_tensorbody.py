"""The hub-to-server tensor body (runners/flavors/tensorbody.py): what goes in comes out, bit for bit,
and a body that does not follow the layout is refused naming what is wrong."""

import json

import numpy as np
import pytest

from runners.flavors.tensorbody import TensorBodyError, decode, encode


def test_arrays_come_back_as_they_went_without_a_copy():
    arrays = {"image": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4), "mask": np.array([True, False])}
    body, length = encode(arrays)
    back = decode(body, str(length))
    assert list(back) == ["image", "mask"]
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array)
    assert not back["image"].flags.writeable  # a view on the body's bytes


def body_with(spec: dict, data: bytes) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [spec]}).encode()
    return header + data, str(len(header))


@pytest.mark.parametrize(
    ("spec", "data", "message"),
    [
        ({"name": "x", "dtype": "object", "shape": [1]}, b"\0" * 8,
         "Input 'x': dtype must be one of float16, float32, float64, int8, int16, int32, int64, uint8, "
         "uint16, uint32, uint64, bool, shape >= 0."),
        ({"name": "x", "dtype": "float32", "shape": [2]}, b"\0" * 4, "Input 'x': 8 bytes announced, 4 left."),
        ({"name": "x", "dtype": "float32", "shape": [1]}, b"\0" * 6, "2 bytes follow the last input."),
        ({"name": "x", "dtype": "float32"}, b"",
         "Each input needs \"name\", \"dtype\" and a \"shape\" of integers: 'shape'"),
    ],
)  # fmt: skip
def test_a_body_off_the_layout_is_refused_naming_it(spec, data, message):
    with pytest.raises(TensorBodyError) as caught:
        decode(*body_with(spec, data))
    assert str(caught.value) == message


def test_a_missing_or_wrong_header_length_is_refused():
    body, _ = body_with({"name": "x", "dtype": "float32", "shape": [1]}, b"\0" * 4)
    for length in (None, "", "-1", "99999"):
        with pytest.raises(TensorBodyError, match="x-aidhub-header-length header must give"):
            decode(body, length)

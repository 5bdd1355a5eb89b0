"""Reading an ONNX graph's named inputs and outputs (dtype and shape) without running it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from registry.errors import RegistryError

ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
}  # fmt: skip


class OnnxUnreadable(RegistryError):
    pass


def _tensor(value_info, where: str) -> dict:
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        raise OnnxUnreadable(
            f"{where} {value_info.name!r} is a {kind}, not a tensor; export with plain tensor "
            "outputs (for skl2onnx: options={id(model): {'zipmap': False}})."
        )
    tensor = value_info.type.tensor_type
    dtype = ONNX_DTYPES.get(tensor.elem_type)
    if dtype is None:
        raise OnnxUnreadable(f"{where} {value_info.name!r} has unsupported element type {tensor.elem_type}")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return {"dtype": dtype, "shape": shape}


def read_onnx_schema(path: Path) -> tuple[dict, dict]:
    """Return (inputs, outputs): name -> {"dtype", "shape"}, read from the graph at `path`.

    Only the graph's inputs, outputs and initializer names are parsed, reading the file where they
    are: the weights are skipped over, never read, so a model of gigabytes costs no memory here."""
    from google.protobuf.message import DecodeError
    from onnx import ValueInfoProto

    try:
        with open(path, "rb", buffering=0) as f:
            buf = _Window(f)
            graph = _graph(buf)
            parts = list(_fields(buf, *graph))
            initializers = {_name(buf, s, e) for field, s, e in parts if field == INITIALIZER}
            declared = [(f, ValueInfoProto.FromString(buf[s:e])) for f, s, e in parts if f in (INPUT, OUTPUT)]
    except (ValueError, OSError, IndexError, DecodeError) as e:
        raise OnnxUnreadable(f"{path.name} is not a readable ONNX model: {e}") from e
    inputs = {v.name: _tensor(v, "input") for f, v in declared if f == INPUT and v.name not in initializers}
    outputs = {v.name: _tensor(v, "output") for f, v in declared if f == OUTPUT}
    return inputs, outputs


class _Window:
    """A file's bytes by index (`buf[i]`, `buf[a:b]`), read 64 KiB at a time around what is asked."""

    def __init__(self, file: BinaryIO):
        self.file, self.size = file, os.fstat(file.fileno()).st_size
        self.start, self.data = 0, b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.file.seek(key.start)
            return self.file.read(key.stop - key.start)
        if not self.start <= key < self.start + len(self.data):
            self.file.seek(key)
            self.start, self.data = key, self.file.read(64 * 1024)
        if key - self.start >= len(self.data):
            raise IndexError(f"byte {key} is past the end of the file")
        return self.data[key - self.start]


# ModelProto.graph, and GraphProto's initializer, input and output; TensorProto.name (onnx.proto)
GRAPH, INITIALIZER, INPUT, OUTPUT, TENSOR_NAME = 7, 5, 11, 12, 8


def _graph(buf) -> tuple[int, int]:
    for field, start, end in _fields(buf, 0, len(buf)):
        if field == GRAPH:
            return start, end
    raise ValueError("it has no graph")


def _name(buf, start: int, end: int) -> str:
    for field, s, e in _fields(buf, start, end):
        if field == TENSOR_NAME:
            return bytes(buf[s:e]).decode()
    return ""


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message in buf[start:end];
    numbers and fixed-size fields are skipped."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("a field runs past the end of its message")
            yield key >> 3, pos, pos + length
            pos += length
        else:
            raise ValueError(f"wire type {wire} at byte {pos} is not protobuf")


def _varint(buf, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("a number is longer than 10 bytes")

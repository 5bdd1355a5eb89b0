"""Reading an ONNX graph's named inputs and outputs (dtype and shape) without running it."""

from __future__ import annotations

from pathlib import Path

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
    """Return (inputs, outputs): name -> {"dtype", "shape"}, read from the graph at `path`."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise OnnxUnreadable(f"{path.name} is not a readable ONNX model: {e}") from e
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: _tensor(i, "input") for i in graph.input if i.name not in initializers}
    outputs = {o.name: _tensor(o, "output") for o in graph.output}
    return inputs, outputs

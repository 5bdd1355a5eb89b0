"""ONNX models through onnxruntime; the schema (names, dtypes, shapes) is read from the graph."""

from __future__ import annotations

from pathlib import Path

from .convert import InputError, artifact_path, cpu_count, require_inputs, to_array, to_json

ORT_DTYPES = {
    "tensor(float16)": "float16", "tensor(float)": "float32", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "string",
}  # fmt: skip


class OnnxModel:
    def __init__(self, session):
        self.session = session
        self.inputs = {i.name: (_dtype(i), list(i.shape)) for i in session.get_inputs()}
        self.output_names = [o.name for o in session.get_outputs()]

    def predict(self, inputs: dict) -> dict:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

        require_inputs(inputs, list(self.inputs))
        feed = {n: to_array(n, inputs[n], *self.inputs[n]) for n in self.inputs}
        try:
            results = self.session.run(self.output_names, feed)
        except (InvalidArgument, Fail) as e:
            raise InputError(f"The model rejected the inputs: {e}") from e
        return {n: to_json(v) for n, v in zip(self.output_names, results, strict=True)}


def _dtype(node) -> str:
    if node.type not in ORT_DTYPES:
        raise TypeError(f"ONNX input {node.name!r} has type {node.type}, which is not supported.")
    return ORT_DTYPES[node.type]


def load(package_dir: Path, artifact, entrypoint, inputs, outputs, device: str, threads=None) -> OnnxModel:
    """`threads`: the CPUs of one server worker, so that workers x threads stays within the version's
    CPU limit (None: every CPU this process may use)."""
    import onnxruntime as ort

    path = artifact_path(package_dir, artifact, "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(threads or cpu_count(), cpu_count())
    options.inter_op_num_threads = 1  # graphs run sequentially: no pool of inter-op threads needed
    # Spinning threads burn the CPU the event loop needs between calls (and other workers' CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=_providers(ort, device))
    return OnnxModel(session)


def _providers(ort, device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError(
            "This model needs a GPU but onnxruntime has no CUDAExecutionProvider here "
            f"(available: {available}); install onnxruntime-gpu and assign a GPU."
        )
    return ["CPUExecutionProvider"]

"""MLServer 1.7 custom runtimes (MLServer ships none for ONNX or TorchScript since 1.x): copied as
`peers_runtime.py` into the model repository that benchmarks/peers serves with `mlserver start`.
Runs inside MLServer's own environment (.cache/peers/mlserver): nothing of aidhub is imported.
Inputs arrive as v2 tensors (FP32), decoded by MLServer's NumpyCodec; outputs leave the same way.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        import onnxruntime as ort

        path = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        arrays = self._session.run(None, feeds)
        return _response(self.name, dict(zip(self._outputs, arrays, strict=True)))


class TorchScriptRuntime(MLModel):
    """A TorchScript module returning (label, probabilities), as examples/digits-torch does."""

    async def load(self) -> bool:
        import torch

        self._torch = torch
        self._model = torch.jit.load(await get_model_uri(self._settings)).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensor = self._torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]))
        with self._torch.no_grad():
            label, probabilities = self._model(tensor)
        return _response(self.name, {"label": label.numpy(), "probabilities": probabilities.numpy()})


def _response(name: str, arrays: dict) -> InferenceResponse:
    outputs = [NumpyCodec.encode_output(key, value) for key, value in arrays.items()]
    return InferenceResponse(model_name=name, outputs=outputs)

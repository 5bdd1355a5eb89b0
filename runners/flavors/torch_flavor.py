"""TorchScript models (`torch.jit.save`): inputs in manifest order as positional tensors."""

from __future__ import annotations

from pathlib import Path

from .convert import artifact_path, cpu_count, name_outputs, require_inputs, to_array

TORCH_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


class TorchModel:
    def __init__(self, module, inputs: dict, outputs: dict, device: str):
        self.module = module
        self.inputs = inputs
        self.output_names = list(outputs)
        self.device = device

    def predict(self, inputs: dict) -> dict:
        import torch

        require_inputs(inputs, list(self.inputs))
        tensors = [self._tensor(torch, n, inputs[n]) for n in self.inputs]
        with torch.inference_mode():
            result = self.module(*tensors)
        return name_outputs(_to_numpy(result), self.output_names, zip_sequences=True)

    def _tensor(self, torch, name: str, value):
        spec = self.inputs[name]
        array = to_array(name, value, spec.get("dtype", "float32"), spec.get("shape"))
        return torch.from_numpy(array).to(self.device)


def _to_numpy(value):
    """Tensors (also inside tuples, lists and dicts) -> numpy arrays on the CPU."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_to_numpy(v) for v in value)
    return value


def load(package_dir: Path, artifact, entrypoint, inputs, outputs, device: str, threads=None) -> TorchModel:
    """`threads`: the CPUs of one server worker (None: every CPU this process may use)."""
    import torch

    _check_dtypes(inputs)
    torch.set_num_threads(min(threads or cpu_count(), cpu_count()))
    device = _device(torch, device)
    path = artifact_path(package_dir, artifact, "torch")
    module = torch.jit.load(str(path), map_location=device)
    module.eval()
    return TorchModel(module, inputs, outputs, device)


def _check_dtypes(inputs: dict) -> None:
    for name, spec in inputs.items():
        if spec.get("dtype", "float32") not in TORCH_DTYPES:
            raise TypeError(f"Torch input {name!r} has dtype {spec.get('dtype')!r}; use one of "
                            f"{', '.join(TORCH_DTYPES)}.")  # fmt: skip


def _device(torch, device: str) -> str:
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError("This model needs a GPU but torch sees no CUDA device; assign a GPU.")
    return "cuda"

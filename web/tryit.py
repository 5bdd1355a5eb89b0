"""The model page's try-it form, generated from a version's input schema.

`form(version, columns)` turns the inputs ({name: {dtype, shape}}), the package's examples and the
column names of its reference data into the fields the template draws, one per input:

- scalar: one value per row (shape [], [1], [-1] ...): a number field (a text field for strings);
- vector: a fixed row of 2 to 32 values (shape [-1, 4]): a row of fields, labelled with the reference
  data's column names (`features.0`) where it has them, else `features[0]`;
- image: a torch or ONNX input shaped [N, C, H, W] or [N, H, W, C] with C 1 or 3: an upload that the
  browser turns into that tensor (scaled 0..1), next to the tensor's JSON;
- json: any other tensor, as JSON text.

A leading dynamic dimension (or a fixed 1) is the batch: the fields send one row. Every value comes from
a package and may be hostile; the template escapes it as any other text.
"""

from __future__ import annotations

import json
from math import prod

from web.snippets import placeholder

MAX_VECTOR = 32  # a row of at most this many number fields; wider ones are edited as JSON
IMAGE_FRAMEWORKS = ("torch", "onnx")
IMAGE_CHANNELS = (1, 3)
MIN_IMAGE_SIDE = 8
TEXT_DTYPES = ("string",)


def form(version: dict, columns: list[str] | tuple = ()) -> dict:
    """{"fields": [...], "examples": [...]} for the try-it form of `version` (a Hub version dict)."""
    framework, examples = version.get("framework", ""), _example_inputs(version.get("examples"))
    fields = [
        field(i, name, spec, framework, columns) for i, (name, spec) in enumerate(version["inputs"].items())
    ]
    first = examples[0] if examples else {n: placeholder(s) for n, s in version["inputs"].items()}
    for f in fields:
        _fill(f, first.get(f["name"]))
    return {"fields": fields, "examples": [example(i, e, fields) for i, e in enumerate(examples)]}


def _example_inputs(examples) -> list[dict]:
    return [e["inputs"] for e in examples or [] if isinstance(e, dict) and isinstance(e.get("inputs"), dict)]


def field(index: int, name: str, spec: dict, framework: str = "", columns=()) -> dict:
    """One input's field: its kind, the HTML ids, and how the browser builds the value from it."""
    dtype, shape = spec.get("dtype", "float32"), list(spec.get("shape") or [])
    batch = bool(shape) and (shape[0] in (-1, None) or (shape[0] == 1 and len(shape) > 1))
    core = shape[1:] if batch else shape
    base = f"try-in-{index}"
    out = {
        "name": name, "id": base, "kind": kind_of(dtype, core, framework), "dtype": dtype, "shape": shape,
        "batch": batch, "nest": len(core), "error_id": f"{base}-error", "hint_id": f"{base}-hint",
        "input": "text" if dtype in TEXT_DTYPES else "number", "step": "any" if "float" in dtype else "1",
    }  # fmt: skip
    if out["kind"] == "vector":
        out["parts"] = [{"id": f"{base}-{i}", "label": part_label(name, i, columns)} for i in range(core[0])]
    if out["kind"] == "image":
        out["image"] = image_layout(core)
    return out


def kind_of(dtype: str, core: list, framework: str = "") -> str:
    """scalar, vector, image or json, for an input of `dtype` whose row has the shape `core`."""
    if any(d in (-1, None) for d in core) or dtype == "bool":
        return "json"
    if prod(core) == 1:
        return "scalar"
    if len(core) == 1 and core[0] <= MAX_VECTOR:
        return "vector"
    if framework in IMAGE_FRAMEWORKS and dtype.startswith("float") and image_layout(core):
        return "image"
    return "json"


def image_layout(core: list) -> dict | None:
    """{layout, channels, height, width} of an image-shaped row ([C, H, W] or [H, W, C]), else None."""
    if len(core) != 3:
        return None
    for layout, (c, h, w) in (("NCHW", core), ("NHWC", (core[2], core[0], core[1]))):
        if c in IMAGE_CHANNELS and min(h, w) >= MIN_IMAGE_SIDE:
            return {"layout": layout, "channels": c, "height": h, "width": w}
    return None


def part_label(name: str, i: int, columns=()) -> str:
    """The label of element `i` of a vector input: its reference data column, else name[i]."""
    column = f"{name}.{i}"
    return column if column in columns else f"{name}[{i}]"


def field_value(f: dict, value):
    """What the field shows for an input's value: the first row's text (scalar), texts (vector), or
    the whole value as JSON (json, image)."""
    if f["kind"] in ("json", "image"):
        return "" if value is None else json.dumps(value)
    row = value
    if f["batch"]:
        row = value[0] if isinstance(value, list) and value else None
    for _ in range(f["nest"] - (f["kind"] == "vector")):
        row = row[0] if isinstance(row, list) and row else None
    if f["kind"] == "vector":
        row = row if isinstance(row, list) else []
        return [text(row[i] if i < len(row) else None) for i in range(len(f["parts"]))]
    return text(row)


def text(value) -> str:
    """A leaf as a form field's text: numbers as Python writes them (valid HTML numbers), '' for none."""
    if value is None or isinstance(value, list | dict):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def rows(f: dict, value) -> int:
    """How many rows an example gives a batched scalar or vector field (1 otherwise)."""
    if f["kind"] in ("json", "image") or not f["batch"] or not isinstance(value, list):
        return 1
    return len(value)


def _fill(f: dict, value) -> None:
    shown = field_value(f, value)
    if f["kind"] == "vector":
        for part, part_value in zip(f["parts"], shown, strict=True):
            part["value"] = part_value
    else:
        f["value"] = shown


def example(index: int, inputs: dict, fields: list[dict]) -> dict:
    """An example button: its label and each field's values (as `field_value` gives them)."""
    most = max((rows(f, inputs.get(f["name"])) for f in fields), default=1)
    note = f" (row 1 of {most})" if most > 1 else ""
    values = {f["id"]: field_value(f, inputs.get(f["name"])) for f in fields}
    return {"label": f"Example {index + 1}", "note": note, "values": values}

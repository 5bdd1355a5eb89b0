"""How the review page shows one logged input: a table of its values, and an image (a PNG data URL,
made here with zlib, no imaging library) for an input shaped like one: an item of height × width,
optionally with 1, 3 or 4 channels first or last, each side at least MIN_SIDE."""

from __future__ import annotations

import base64
import math
import struct
import zlib

MIN_SIDE = 8
MAX_PIXELS = 1024 * 1024
TABLE_ROWS = 64  # values listed at most per input (an image's are summarised)


def item_of(value, spec: dict):
    """The one item of a logged value (batched: its first row)."""
    shape = list(spec.get("shape") or [])
    if shape and shape[0] == -1 and isinstance(value, list) and value:
        return value[0]
    return value


def _dims(value) -> list[int]:
    dims = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return dims


def image_layout(dims: list[int]) -> tuple[int, int, int, bool] | None:
    """(height, width, channels, channels first) for an image-shaped item; None otherwise."""
    if len(dims) == 3 and dims[0] in (1, 3, 4) and min(dims[1:]) >= MIN_SIDE:
        return dims[1], dims[2], dims[0], True
    if len(dims) == 3 and dims[2] in (1, 3, 4) and min(dims[:2]) >= MIN_SIDE:
        return dims[0], dims[1], dims[2], False
    if len(dims) == 2 and min(dims) >= MIN_SIDE:
        return dims[0], dims[1], 1, False
    return None


def _flat(value) -> list[float]:
    out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(
                float(item) if isinstance(item, int | float) and not isinstance(item, bool) else math.nan
            )
    return out


def _pixels(item, layout) -> list[list[int]]:
    """Rows of bytes (gray or RGB) scaled from the item's smallest to its largest value."""
    height, width, channels, first = layout
    values = _flat(item)
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, span = min(finite), (max(finite) - min(finite)) or 1.0
    scaled = [int(255 * (v - low) / span) if math.isfinite(v) else 0 for v in values]
    shown = 3 if channels >= 3 else 1

    def at(y: int, x: int, c: int) -> int:
        return scaled[(c * height + y) * width + x] if first else scaled[(y * width + x) * channels + c]

    return [[at(y, x, c) for x in range(width) for c in range(shown)] for y in range(height)]


def png_data_url(item, layout) -> str:
    """The item as a PNG (8-bit gray or RGB), as a data: URL the page's CSP allows."""
    height, width, channels, _ = layout
    rows = _pixels(item, layout)
    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    kind = 2 if channels >= 3 else 0

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, kind, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def shown_inputs(inputs, schema: dict) -> list[dict]:
    """Per input: its name, an image (data URL) when it is shaped like one, and rows (place, value)."""
    shown = []
    for name, spec in (schema or {}).items():
        if not isinstance(inputs, dict) or name not in inputs:
            continue
        item = item_of(inputs[name], spec)
        layout = image_layout(_dims(item))
        image = None
        if layout and layout[0] * layout[1] <= MAX_PIXELS and len(_flat(item)) == math.prod(layout[:3]):
            image = png_data_url(item, layout)
        shown.append({"name": name, "image": image, "rows": [] if image else _rows(name, item)})
    return shown


def _rows(name: str, item) -> list[tuple[str, str]]:
    if not isinstance(item, list):
        return [(name, _text(item))]
    values = _flat(item) if all(not isinstance(v, str) for v in item) else item
    rows = [(f"{name}.{i}", _text(v)) for i, v in enumerate(values[:TABLE_ROWS])]
    if len(values) > TABLE_ROWS:
        rows.append(("…", f"{len(values) - TABLE_ROWS} more values"))
    return rows


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)

"""Reading a raw PNG or JPEG body on the native predict route, for a model with one image input.

`curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' .../predict` becomes the tensor the model's
input takes, as the try-it page builds it in the browser (web/tryit.py, web/static/hub.js): the image
is stretched to the input's height and width (bilinear; a fixed size is never refused, and the
`X-Image-Input` reply header says what was done), turned RGB or grayscale by the channels, laid out
NCHW or NHWC, and scaled 0..1 for a float input (0..255 for uint8). A JPEG's EXIF orientation is
applied, as browsers do.

An image input is a 4-D input [N, C, H, W] or [N, H, W, C] with N -1 or 1, C 1 or 3, H and W fixed
(>= 8) or -1 (then the image keeps its size), of a float dtype or uint8.

Hostile bodies: only Pillow's PNG and JPEG decoders ever run (never the format a body claims to
be), and an image over AIDHUB_MAX_IMAGE_PIXELS is refused from its header, before it is decoded.
Decoding (about 0.6 ms for a 224x224 JPEG, 19 ms for a 1024x1024 PNG, 45 ms for a 12 MP JPEG that
JPEG draft mode shrinks while decoding) runs on gevent's thread pool under `aid serve`: Pillow and
numpy release the GIL, so the event loop keeps answering other calls meanwhile.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from gevent import get_hub, monkey
from PIL import Image, ImageOps, UnidentifiedImageError

from hub.errors import BadInput, HubError, TooLarge

IMAGE_TYPES = ("image/png", "image/jpeg")
FORMATS = ["PNG", "JPEG"]  # the only decoders that run, whichever of the two types a body claims
MIN_SIDE = 8
ORIENTATION = 0x0112  # the EXIF tag; 5 to 8 swap width and height
SETTING = "AIDHUB_MAX_IMAGE_PIXELS"
IMAGE_HEADER = "X-Image-Input"  # what was done: "640x480 JPEG resized to 224x224, RGB, ..."


class UnsupportedImageType(HubError):
    status = 415


@dataclass(frozen=True)
class ImageInput:
    """Where an image goes: input `name`, its layout, channels, size (None: the image's) and dtype."""

    name: str
    layout: str
    channels: int
    height: int | None
    width: int | None
    dtype: str

    def shape(self, height: int, width: int) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (1, self.channels, height, width)
        return (1, height, width, self.channels)


def image_type(content_type: str | None) -> str | None:
    """'image/png' or 'image/jpeg' for an image body, None for any other; 415 for another image type."""
    media = (content_type or "").split(";")[0].strip().lower()
    media = "image/jpeg" if media == "image/jpg" else media
    if media in IMAGE_TYPES:
        return media
    if media.startswith("image/"):
        raise UnsupportedImageType(
            f"Content-Type {media} is not read by the hub; send the image as image/png or image/jpeg "
            "(or as a tensor: application/x-npy or JSON)."
        )
    return None


def image_input(schema: dict, model: str, media: str) -> ImageInput:
    """The one image input of a model's `schema`; 422 naming the schema when it has none."""
    found = [_as_image(name, spec) for name, spec in schema.items()]
    if len(found) == 1 and found[0] is not None:
        return found[0]
    takes = "; ".join(f"{n} {s.get('dtype')} {s.get('shape')}" for n, s in schema.items())
    raise BadInput(
        f"A {media} body fits a model with one image input ([N, C, H, W] or [N, H, W, C], C 1 or 3, "
        f'float or uint8); {model} takes {takes}. Send JSON {{"inputs": {{...}}}} or a .npy tensor.'
    )


def _as_image(name: str, spec: dict) -> ImageInput | None:
    dtype, shape = str(spec.get("dtype")), list(spec.get("shape") or [])
    if not (dtype.startswith("float") or dtype == "uint8") or len(shape) != 4 or shape[0] not in (-1, 1):
        return None
    for layout, (c, h, w) in (("NCHW", shape[1:]), ("NHWC", (shape[3], shape[1], shape[2]))):
        if c in (1, 3) and all(d == -1 or (isinstance(d, int) and d >= MIN_SIDE) for d in (h, w)):
            return ImageInput(name, layout, c, None if h == -1 else h, None if w == -1 else w, dtype)
    return None


def read_image(raw: bytes, media: str, target: ImageInput, max_pixels: int) -> tuple[np.ndarray, str]:
    """(the tensor, what was done as the X-Image-Input header), decoded off the event loop."""
    if monkey.is_module_patched("threading"):  # `aid serve`: a real thread, the GIL released
        return get_hub().threadpool.apply(decode, (raw, media, target, max_pixels))
    return decode(raw, media, target, max_pixels)


def decode(raw: bytes, media: str, target: ImageInput, max_pixels: int) -> tuple[np.ndarray, str]:
    """`read_image` on this thread: 413 past `max_pixels` (0: Pillow's own cap), 422 for a bad image."""
    image = _open(raw, media, max_pixels)
    source = f"{image.width}x{image.height} {image.format}"
    mode = "RGB" if target.channels == 3 else "L"
    try:
        image = _upright(image, mode, target)
        if image.mode.startswith("I;16"):  # 16-bit grayscale: its high byte, where convert() would clip
            image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8), "L")
        image = image.convert(mode)
        size = (target.width or image.width, target.height or image.height)
        resized = image.size != size
        if resized:
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadInput(f"The {media} body cannot be decoded: {e}. Is it cut short?") from e
    tensor = _tensor(pixels, target)
    scale = "0..255" if target.dtype == "uint8" else "scaled 0..1"
    done = f"resized to {size[0]}x{size[1]}" if resized else "not resized"
    return tensor, f"{source} {done}, {mode}, {target.dtype} {scale}, {target.layout}"


def _open(raw: bytes, media: str, max_pixels: int) -> Image.Image:
    """The image, its header read and its pixels not yet: 413 past `max_pixels`, 422 for a non-image."""
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
    except Image.DecompressionBombError as e:  # past Pillow's own cap (about 179 megapixels)
        raise TooLarge(f"The image is too large to decode: {e} Send a smaller image.") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadInput(
            f"The body is not a PNG or JPEG image (Content-Type: {media}): {e}. "
            "Send the image file's bytes as they are (curl --data-binary @file)."
        ) from e
    if max_pixels and image.width * image.height > max_pixels:  # 0: no limit but Pillow's
        size = f"{image.width}x{image.height} ({image.width * image.height:,} pixels)"
        raise _too_large(f"The image is {size}", max_pixels)
    return image


def _too_large(what: str, max_pixels: int) -> TooLarge:
    return TooLarge(
        f"{what}, over the limit of {max_pixels:,} pixels per image. "
        f"Send a smaller image, or raise {SETTING} on the hub."
    )


def _upright(image: Image.Image, mode: str, target: ImageInput) -> Image.Image:
    """The image turned as its EXIF orientation says; a JPEG bigger than twice the target is decoded
    at 1/2, 1/4 or 1/8 of its size (draft mode: 4x faster for a photo, then resized as any other)."""
    orientation = image.getexif().get(ORIENTATION, 1)
    if image.format == "JPEG" and target.width and target.height:
        turned = orientation in (5, 6, 7, 8)
        image.draft(mode, (target.height, target.width) if turned else (target.width, target.height))
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return image


def _tensor(pixels: np.ndarray, target: ImageInput) -> np.ndarray:
    """[H, W] or [H, W, C] uint8 pixels as the input's shape and dtype (floats 0..1, as the page)."""
    height, width = pixels.shape[:2]
    values = pixels.reshape(height, width, target.channels)
    if target.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    values = values.reshape(target.shape(height, width))
    if target.dtype == "uint8":
        return np.ascontiguousarray(values)
    return np.divide(values, 255, dtype=target.dtype)

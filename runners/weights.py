"""Weights images on the container runner: a version's large files as one layer on its environment
image, built once per (environment image, weight files by digest) and shared by every version
that has the same weights on the same environment (docs/storage.md, "Weights in images").

Which files: `is_weight` (runners/contextfiles.py): every package file of 1 MiB or more, and the
manifest's `artifact` whatever its size. A weights image is built when they add up to
WEIGHTS_IMAGE_MIN_BYTES or more; smaller weights go into the version image as before (sending a
few MB again costs less than building and tagging one more image).

The key (`weights_key`) is the sha256 of the environment image's id and one `<sha256> <size>
<path>` line per weight file. The sha256 comes from the hub's file list (`ServeSpec.files`, the
blob digests), so nothing is read to find the key; a spec made without one (tests, tools) has the
files hashed here. The tag `aidhub-weights:<key>` is only a name: images are found by their labels
(`aidhub.role=weights`, `aidhub.weights=<key>`, docs/podman-notes.md quirk 11).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from vocab.sizes import format_size

from .base import LogFn, RunnerError, ServeSpec
from .buildcontext import weights_labels, weights_tag
from .contextfiles import context_summary, weight_files, write_weights_context
from .engine import Engine, matching

WEIGHTS_IMAGE_MIN_BYTES = 64 * 1024**2
HASH_CHUNK = 1024**2


def weights_key(env_image_id: str, files: list[tuple[str, Path]], known: dict | None = None) -> str:
    """The sha256 hex naming `files` ((relative path, file)) on the environment image
    `env_image_id`; `known` maps a relative path to its sha256 (the hub's file list), else the
    file is hashed."""
    known = known or {}
    lines = [f"{env_image_id}\n"]
    for rel, path in sorted(files):
        size = path.stat().st_size
        lines.append(f"{known.get(rel) or _sha256(path)} {size} {rel}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def find_image(engine: Engine, labels: dict[str, str], tag: str, label: str) -> str | None:
    """A tag of the image that carries `labels` (listed by the one label `label`, quirk 15), as the
    engine spells it; an image found without a tag (moved by a later build) is tagged `tag` again."""
    found = matching(engine.client.images.list(filters={"label": f"{label}={labels[label]}"}), labels)
    if not found:
        return None
    image = sorted(found, key=lambda image: not image.tags)[0]
    if not image.tags:
        image.tag(*tag.split(":"))
        image.reload()
    return sorted(image.tags)[0]


def weights_image(
    engine: Engine, spec: ServeSpec, env: tuple[str, str, str], context_of: Callable, log: LogFn
) -> str | None:
    """The weights image of `spec` on the environment `env` (image reference, env key, base),
    built first when the engine lacks it; None when its weights are too small for one.
    `context_of(spec)` gives a new build context folder (a context manager)."""
    env_image, env_key, base = env
    files = weight_files(Path(spec.package_dir), spec.artifact)
    size = sum(path.stat().st_size for _, path in files)
    if size < WEIGHTS_IMAGE_MIN_BYTES:
        return None
    key = weights_key(engine.client.images.get(env_image).id, files, spec.files)
    tag, labels = weights_tag(key), weights_labels(key, env_key, base)
    what = f"{len(files)} weight file(s), {format_size(size)}"
    found = find_image(engine, labels, tag, "aidhub.weights")
    if found:
        log(f"The weights image {tag} exists ({what}): building FROM it (no weights to send)")
        return found
    with context_of(spec) as context:
        write_weights_context(context, files, env_image, key, env_key, base)
        log(f"Building weights image {tag} FROM {env_image} ({what}; context {context_summary(context)})")
        engine.build_image(spec, context, tag, log)
    found = find_image(engine, labels, tag, "aidhub.weights")
    if not found:
        raise RunnerError(f"The weights image {tag} was built but the engine does not list it; deploy again.")
    return found

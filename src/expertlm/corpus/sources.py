"""Readers for source files: each yields `RawDoc`s, streaming, with file and line for errors.

Supported: `.txt` (one document per file), `.jsonl`/`.jsonl.gz`, `.json` (a list of objects,
or one object), `.csv`/`.tsv` (optionally `.gz`), `.parquet` (needs pyarrow). Folders are
walked recursively in sorted order, so the same inputs always give the same corpus.

`hf:NAME[:split]` is a Hugging Face dataset read by the `datasets` library, streaming (no full
download): NAME is a hub id (`hf:BrainGPT/some_dataset:train`, needs the network) or a local
folder of data files (`hf:./my_dataset:validation`, `hf:/data/ds`), whose splits come from
the file names as `datasets` names them (train.jsonl, validation.jsonl, ...). The split
defaults to `train`; the field mapping is the same as for JSON Lines.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertlm.config import CorpusConfig
from expertlm.console import warn
from expertlm.errors import ExpertlmError, names, where
from expertlm.io import combine_hashes, read_lines, sha256_file

SUFFIXES = (
    ".txt",
    ".jsonl",
    ".jsonl.gz",
    ".json",
    ".csv",
    ".csv.gz",
    ".tsv",
    ".tsv.gz",
    ".parquet",
)
_YEAR = re.compile(r"\s*(\d{4})")
MAX_BAD_WARNINGS = 5
HF_PREFIX = "hf:"


@dataclass
class RawDoc:
    text: str
    id: str | None
    year: int | None
    source: str  # "path" or "path:line"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HFSource:
    """`hf:NAME[:split]`: a Hugging Face dataset (hub id or local folder), streamed."""

    name: str
    split: str = "train"

    def __str__(self) -> str:
        return f"{HF_PREFIX}{self.name}:{self.split}"

    @classmethod
    def parse(cls, spec: str) -> HFSource:
        rest = spec[len(HF_PREFIX) :]
        name, sep, split = rest.rpartition(":")
        if not sep:
            name, split = rest, "train"
        if not name or not split or "/" in split:
            raise ExpertlmError(f"{spec}: expected hf:NAME[:split], e.g. hf:user/dataset:train")
        return cls(name, split)

    def load(self) -> Any:
        """The streaming `datasets.IterableDataset` of this split."""
        try:
            import datasets
        except ImportError:
            raise ExpertlmError(
                f"{self}: reading Hugging Face datasets needs the datasets library (pip install 'expertlm[net]')"
            ) from None
        try:
            return datasets.load_dataset(self.name, split=self.split, streaming=True)
        except Exception as e:  # datasets raises many types: missing, offline, bad split
            msg = (str(e).strip().splitlines() or [""])[0]
            raise ExpertlmError(
                f"{self}: cannot load the dataset ({type(e).__name__}: {msg}); a hub id needs "
                "the network, a local folder must hold data files"
            ) from None

    def local_files(self) -> list[Path]:
        folder = Path(self.name)
        if not folder.is_dir():
            return []
        return sorted(
            f
            for f in folder.rglob("*")
            if f.is_file() and not any(p.startswith(".") for p in f.relative_to(folder).parts)
        )


Source = Path | HFSource


def describe_source(src: Source) -> dict[str, Any]:
    """What the manifest records about an input: path, size and sha256 of a file; for a
    dataset its name and split, and the sha256 of its files when it is a local folder."""
    if isinstance(src, HFSource):
        files = src.local_files()
        digest = combine_hashes(f"{f.relative_to(src.name)}:{sha256_file(f)}" for f in files)
        return {
            "path": str(src),
            "bytes": sum(f.stat().st_size for f in files),
            "sha256": digest if files else None,
            "hf": {"name": src.name, "split": src.split, "local": bool(files)},
        }
    return {"path": str(src), "bytes": src.stat().st_size, "sha256": sha256_file(src)}


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix.removesuffix(".gz").lstrip(".")
    return None


def expand_sources(paths: list[str | Path], exclude: Path | None = None) -> list[Source]:
    """Files named directly, and every supported file under folders (recursive, sorted);
    `hf:NAME[:split]` names a Hugging Face dataset (checked by loading it, streaming).

    Under a folder, hidden files and folders (`.git`, a stage's `.NAME.tmp-*`) are skipped, and
    so is everything inside `exclude` (the output folder, so a rebuild never reads its own
    previous output back in).
    """
    if not paths:
        raise ExpertlmError("no source given: name at least one file or folder")
    skip = exclude.resolve() if exclude is not None else None
    files: list[Source] = []
    for given in paths:
        p = Path(given)
        if str(given).startswith(HF_PREFIX) and not p.exists():
            hf = HFSource.parse(str(given))
            hf.load()  # fail now, before any work, if it cannot be read
            files.append(hf)
            continue
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and kind_of(f)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and not (skip is not None and f.resolve().is_relative_to(skip))
            )
            if not found:
                raise ExpertlmError(f"{p}: folder has no supported files ({', '.join(SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            if kind_of(p) is None:
                raise ExpertlmError(
                    f"{p}: unsupported file type (supported: {', '.join(SUFFIXES)})"
                )
            files.append(p)
        elif p.exists():
            raise ExpertlmError(f"{p}: not a regular file or folder")
        else:
            raise ExpertlmError(f"{p}: no such file or folder")
    for f in files:
        if isinstance(f, HFSource):
            continue
        try:
            with open(f, "rb"):
                pass
        except OSError as e:
            raise ExpertlmError(f"{f}: cannot be read ({e.strerror})") from None
    return files


# Years outside this range are errors in the data, not publication years.
YEARS = (1000, 2999)


def parse_year(value: Any) -> int | None:
    """2015, 2015.0, "2015", "2015-03-01" -> 2015; anything else -> None (a number outside
    `YEARS` is returned as it is, for the reader to refuse)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and (m := _YEAR.match(value)):
        return int(m.group(1))
    return None


def _get(record: dict, key: str) -> Any:
    """A field by name, or by dotted path into nested objects (`meta.year`)."""
    if key in record:
        return record[key]
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _has(record: dict, key: str) -> bool:
    """Whether a record has the field, by name or dotted path (its value may be null)."""
    if key in record:
        return True
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class Reader:
    """Turns records of one file into `RawDoc`s, applying the field mapping.

    Bad records raise `ExpertlmError` naming file and line, or with `skip_bad` are counted in
    `stats["bad_record"]` and skipped (the first few are shown as warnings).
    """

    def __init__(
        self,
        cfg: CorpusConfig,
        stats: Counter,
        on_bytes: Callable[[int], None],
        roots: tuple[Path, ...] = (),
    ) -> None:
        self.cfg, self.stats, self.on_bytes = cfg, stats, on_bytes
        self.roots = tuple(r.resolve() for r in roots)
        # the fields the mapping names, and whether any record had each (a misspelled field is
        # absent from every record: an error, not a silent no-op); the field names seen
        self.found = dict.fromkeys([cfg.id_field, cfg.year_field, *cfg.keep_fields], False)
        self.seen: dict[str, None] = {}
        self.records = 0  # records with fields (not .txt files)

    def txt_id(self, path: Path) -> str:
        """`FOLDER/sub/file.txt` under a source folder, else `file.txt`: the same however the
        path was written (relative, absolute, `./`), so the split does not depend on it."""
        full = path.resolve()
        for root in self.roots:
            if full.is_relative_to(root):
                return (Path(root.name) / full.relative_to(root)).as_posix()
        return path.name

    def bad(self, msg: str) -> None:
        if not self.cfg.skip_bad:
            raise ExpertlmError(msg + " (pass --skip-bad to count and skip such records)")
        self.stats["bad_record"] += 1
        if self.stats["bad_record"] <= MAX_BAD_WARNINGS:
            warn(f"skipped: {msg}")

    def read(self, path: Source) -> Iterator[RawDoc]:
        if isinstance(path, HFSource):
            yield from self._hf(path)
            return
        kind = kind_of(path)
        readers = {
            "txt": self._txt,
            "jsonl": self._jsonl,
            "json": self._json,
            "csv": self._csv,
            "tsv": self._csv,
            "parquet": self._parquet,
        }
        yield from readers[kind](path)  # type: ignore[index]

    def _doc(self, record: dict, src: str) -> RawDoc | None:
        self.records += 1
        if len(self.seen) < 50:
            self.seen.update(dict.fromkeys(map(str, record)))
        for f, found in self.found.items():
            if not found and _has(record, f):
                self.found[f] = True
        text = _get(record, self.cfg.text_field)
        if text is None and self.cfg.text_field in record:
            self.bad(f"{src}: text field '{self.cfg.text_field}' is null, not a string")
            return None
        if text is None:
            keys = names(list(record)[:12]) or "none"
            self.bad(
                f"{src}: no text field '{self.cfg.text_field}' (fields: {keys}; choose one with --text-field)"
            )
            return None
        if not isinstance(text, str):
            self.bad(
                f"{src}: text field '{self.cfg.text_field}' is {type(text).__name__}, not a string"
            )
            return None
        doc_id = _get(record, self.cfg.id_field)
        extra = {k: v for k in self.cfg.keep_fields if (v := _get(record, k)) is not None}
        year = parse_year(_get(record, self.cfg.year_field))
        if year is not None and not YEARS[0] <= year <= YEARS[1]:
            self.bad(f"{src}: year {year} is not a publication year ({YEARS[0]}-{YEARS[1]})")
            return None
        return RawDoc(
            text=text,
            id=None if doc_id is None or doc_id == "" else str(doc_id),
            year=year,
            source=src,
            extra=extra,
        )

    def check_fields(self) -> None:
        """After every record: see `check_fields`."""
        check_fields(self.cfg, self.found, self.seen, self.records)

    def _jsonl(self, path: Path) -> Iterator[RawDoc]:
        for lineno, line in self._lines(path):
            if not line.strip():
                continue
            src = where(path, lineno)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                self.bad(f"{src}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno})")
                continue
            if not isinstance(record, dict):
                self.bad(f"{src}: expected a JSON object, got {type(record).__name__}")
                continue
            if (doc := self._doc(record, src)) is not None:
                yield doc

    def _lines(self, path: Path) -> Iterator[tuple[int, str]]:
        """Decoded lines; bytes that are not UTF-8 make a bad record."""
        for lineno, line in read_lines(path, self.on_bytes):
            if lineno == 1:  # a byte-order mark (Excel's CSV export) is not data
                line = line.removeprefix(b"\xef\xbb\xbf")
            try:
                yield lineno, line.decode("utf-8")
            except UnicodeDecodeError as e:
                self.bad(
                    f"{where(path, lineno)}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})"
                )

    def _txt(self, path: Path) -> Iterator[RawDoc]:
        data = path.read_bytes()
        self.on_bytes(len(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self.bad(f"{where(path, line)}: not valid UTF-8 (byte 0x{data[e.start]:02x})")
            return
        yield RawDoc(text=text, id=self.txt_id(path), year=None, source=str(path))

    def _json(self, path: Path) -> Iterator[RawDoc]:
        # A .json file is one JSON value, so it is parsed whole (use .jsonl for big corpora).
        data = path.read_bytes()
        self.on_bytes(len(data))
        data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not data
        try:
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ExpertlmError(
                f"{where(path, line)}: not valid UTF-8 (byte 0x{data[e.start]:02x})"
            ) from None
        except json.JSONDecodeError as e:
            raise ExpertlmError(
                f"{where(path, e.lineno)}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno})"
            ) from None
        records = value if isinstance(value, list) else [value]
        for i, record in enumerate(records):
            src = f"{path}[{i}]"
            if not isinstance(record, dict):
                self.bad(f"{src}: expected a JSON object, got {type(record).__name__}")
                continue
            if (doc := self._doc(record, src)) is not None:
                yield doc

    def _csv(self, path: Path) -> Iterator[RawDoc]:
        csv.field_size_limit(sys.maxsize)  # full texts exceed the 128 KiB default
        delimiter = "\t" if kind_of(path) == "tsv" else ","
        numbered = _LineTracker(self._lines(path))
        reader = csv.reader(numbered, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ExpertlmError(
                f"{where(path, numbered.lineno)}: malformed CSV header ({e})"
            ) from None
        if self.cfg.text_field not in header:
            raise ExpertlmError(
                f"{path}: no column '{self.cfg.text_field}' (columns: {names(header)}; choose one with --text-field)"
            )
        while True:
            numbered.row_start = None
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                self.bad(f"{where(path, numbered.row_start)}: malformed CSV row ({e})")
                continue
            start = numbered.row_start
            if not row:
                continue
            src = where(path, start)
            if len(row) != len(header):
                self.bad(f"{src}: {len(row)} fields, the header has {len(header)}")
                continue
            if (doc := self._doc(dict(zip(header, row, strict=False)), src)) is not None:
                yield doc

    def _parquet(self, path: Path) -> Iterator[RawDoc]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ExpertlmError(
                f"{path}: reading Parquet needs pyarrow (pip install 'expertlm[parquet]')"
            ) from None
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise ExpertlmError(f"{path}: not a readable Parquet file ({e})") from None
        columns = pf.schema_arrow.names
        if self.cfg.text_field not in columns:
            raise ExpertlmError(
                f"{path}: no column '{self.cfg.text_field}' (columns: {names(columns)}; choose one with --text-field)"
            )
        wanted = [
            c
            for c in {
                self.cfg.text_field,
                self.cfg.id_field,
                self.cfg.year_field,
                *self.cfg.keep_fields,
            }
            if c in columns
        ]
        row = 0
        per_row = path.stat().st_size / max(pf.metadata.num_rows, 1)
        for batch in pf.iter_batches(batch_size=1024, columns=wanted):
            self.on_bytes(int(per_row * batch.num_rows))
            for record in batch.to_pylist():
                row += 1
                if (doc := self._doc(record, f"{path}[row {row}]")) is not None:
                    yield doc

    def _hf(self, src: HFSource) -> Iterator[RawDoc]:
        ds = src.load()
        columns = list(ds.features) if getattr(ds, "features", None) else None
        if columns is not None and self.cfg.text_field not in columns:
            raise ExpertlmError(
                f"{src}: no column '{self.cfg.text_field}' (columns: {names(columns)}; choose one with --text-field)"
            )
        rows = iter(ds)
        row = 0
        while True:
            try:
                record = next(rows)
            except StopIteration:
                break
            except Exception as e:  # a bad data file surfaces here, mid-stream
                raise ExpertlmError(
                    f"{src}[row {row + 1}]: cannot be read ({type(e).__name__}: {e})"
                ) from None
            row += 1
            if (doc := self._doc(record, f"{src}[row {row}]")) is not None:
                yield doc
        for f in src.local_files():
            self.on_bytes(f.stat().st_size)


def check_fields(cfg: CorpusConfig, found: dict[str, bool], seen: dict, records: int) -> None:
    """After every record (of every shard): a field the user named (or the year field, when a
    year filter is set) that no record had is an error naming the fields seen."""
    if not records:
        return
    given = cfg.model_fields_set
    named = {cfg.id_field: "id_field" in given, cfg.year_field: "year_field" in given or
             cfg.min_year is not None or cfg.max_year is not None,
             **dict.fromkeys(cfg.keep_fields, True)}  # fmt: skip
    missing = [f for f, ok in found.items() if not ok and named.get(f)]
    if missing:
        flags = {cfg.id_field: "--id-field", cfg.year_field: "--year-field"}
        what = ", ".join(f"'{f}' ({flags.get(f, '--keep-field')})" for f in missing)
        raise ExpertlmError(
            f"no record has the field(s) {what}; fields seen: {names(seen) or 'none'}"
        )


class _LineTracker:
    """Feeds decoded lines to csv.reader while remembering the current physical line number."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines, self.lineno = lines, 0
        self.row_start: int | None = None  # first line read since the caller reset it

    def __iter__(self) -> _LineTracker:
        return self

    def __next__(self) -> str:
        # Line numbers come from the source: lines skipped as bad (skip_bad) are not counted
        # here, so `lineno + 1` would not be where the next row starts.
        self.lineno, line = next(self._lines)
        if self.row_start is None:
            self.row_start = self.lineno
        return line


def read_sources(
    files: list[Source],
    cfg: CorpusConfig,
    stats: Counter,
    on_bytes: Callable[[int], None] = lambda n: None,
    roots: tuple[Path, ...] = (),
) -> Iterator[RawDoc]:
    """Documents of `files` (and datasets) in order; `roots` are the source folders (they
    name .txt ids)."""
    reader = Reader(cfg, stats, on_bytes, roots)
    for path in files:
        yield from reader.read(path)
    reader.check_fields()


__all__ = [
    "SUFFIXES",
    "HFSource",
    "RawDoc",
    "Reader",
    "check_fields",
    "describe_source",
    "expand_sources",
    "parse_year",
    "read_sources",
]

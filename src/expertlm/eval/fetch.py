"""`expertlm bench fetch brainbench`: the published BrainBench files, pinned and checked.

`bench_fetch("brainbench", out)` downloads the published BrainBench test cases and the human
participant data from the authors' GitHub repositories at pinned commits (through the polite
client `net.Http`), checks them (columns, row counts) and writes them, with their sha256 in
`manifest.json`, into one folder:

    OUT/BrainBench_Human_v0.1.csv    200 items written by neuroscientists
    OUT/BrainBench_GPT-4_v0.1.csv    100 items written by GPT-4
    OUT/participant_data.csv         one row per trial of the human experts
    OUT/abstract_id_doi.csv          the trials' abstract_id -> DOI of the item
    OUT/manifest.json
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from expertlm.config import FetchConfig
from expertlm.console import info
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, check_output_dir, csv_rows, provenance, sha256_file, write_json
from expertlm.net import DownloadError, Http

DEFAULT_BASE_URL = FetchConfig.model_fields["base_url"].default
# The commits the authors' own analysis code pins for these two repositories, used as git
# submodules (named in the README of braingpt-lovelab/backwards; braingpt-lovelab/
# matching_experts has the same two submodules), so everyone scores the same items.
TESTCASES_REPO = "braingpt-lovelab/brainbench_testcases"
TESTCASES_COMMIT = "89869dab3be1ec096dc38931ea33e43268c65d30"
PARTICIPANTS_REPO = "braingpt-lovelab/brainbench_participant_data"
PARTICIPANTS_COMMIT = "bd1536e99c23d0d1d96d2d3d09bb9a4f52c8e170"

TESTCASE_COLUMNS = ("doi", "journal_section", "original_abstract", "incorrect_abstract")
PARTICIPANT_COLUMNS = (
    "pid", "expertise", "confidence", "click_outside", "correct", "rt", "abstract_id",
    "journal_section", "click_slider", "recognised", "age", "country", "current position",
    "experience", "sex",
)  # fmt: skip
TRIALS_PER_PARTICIPANT = 9
FETCH_RATE = 3.0  # requests per second to the file host
FETCH_RETRIES = 4
ABSTRACT_IDS = 200


def _check_testcases(rows_expected: int) -> Callable[[Path], dict]:
    def check(path: Path) -> dict:
        from expertlm.eval.benchmark import read_benchmark

        rows = [row for _, row in csv_rows(path, TESTCASE_COLUMNS)]
        if len(rows) != rows_expected:
            raise ExpertlmError(f"{path}: {len(rows)} items, expected {rows_expected}")
        items = read_benchmark(path)  # every item has two different, non-empty versions
        return {"rows": len(items), "columns": list(rows[0]) if rows else []}

    return check


def _check_participants(path: Path) -> dict:
    trials: Counter = Counter()
    columns: list[str] = []
    for line, row in csv_rows(path, PARTICIPANT_COLUMNS):
        columns = columns or [c for c in row if c is not None]
        if row["correct"] not in ("0", "1"):
            raise ExpertlmError(f"{path}:{line}: correct is {row['correct']!r}, not 0 or 1")
        if not row["journal_section"].startswith(("human_", "machine_")):
            raise ExpertlmError(
                f"{path}:{line}: journal_section {row['journal_section']!r} does not start with human_ or machine_"
            )
        trials[row["pid"]] += 1
    if not trials:
        raise ExpertlmError(f"{path}: no trials")
    pid, most = trials.most_common(1)[0]
    if most > TRIALS_PER_PARTICIPANT:
        raise ExpertlmError(
            f"{path}: participant {pid} has {most} trials (at most {TRIALS_PER_PARTICIPANT})"
        )
    return {"rows": sum(trials.values()), "columns": columns, "participants": len(trials)}


def _check_abstract_ids(path: Path) -> dict:
    # `DOI;abstract_id;abstract`, semicolon-separated, and the abstract column (a truncated
    # first sentence) holds unbalanced quotes, so it is split by hand, not read as CSV.
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    if not lines or lines[0].strip() != "DOI;abstract_id;abstract":
        raise ExpertlmError(f"{path}: expected the header 'DOI;abstract_id;abstract'")
    ids = []
    for i, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split(";", 2)
        try:
            ids.append(int(float(parts[1])))
        except (IndexError, ValueError):
            raise ExpertlmError(f"{path}:{i}: no numeric abstract_id") from None
    if sorted(ids) != list(range(1, ABSTRACT_IDS + 1)):
        raise ExpertlmError(f"{path}: expected abstract ids 1..{ABSTRACT_IDS} once each")
    return {"rows": len(ids), "columns": ["DOI", "abstract_id", "abstract"]}


@dataclass(frozen=True)
class Remote:
    """One published file: where it lives and how to check it."""

    name: str  # its name in the output folder
    repo: str
    commit: str
    path: str  # inside the repository
    check: Callable[[Path], dict]

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"


BRAINBENCH = (
    Remote("BrainBench_Human_v0.1.csv", TESTCASES_REPO, TESTCASES_COMMIT,
           "BrainBench_Human_v0.1.csv", _check_testcases(200)),
    Remote("BrainBench_GPT-4_v0.1.csv", TESTCASES_REPO, TESTCASES_COMMIT,
           "BrainBench_GPT-4_v0.1.csv", _check_testcases(100)),
    Remote("participant_data.csv", PARTICIPANTS_REPO, PARTICIPANTS_COMMIT,
           "data/participant_data.csv", _check_participants),
    Remote("abstract_id_doi.csv", PARTICIPANTS_REPO, PARTICIPANTS_COMMIT,
           "abstract_id_doi.csv", _check_abstract_ids),
)  # fmt: skip
BENCHMARKS = {"brainbench": BRAINBENCH}


def _manual_steps(remotes: tuple[Remote, ...], base_url: str, out: Path) -> str:
    urls = "\n".join(f"  {r.url(base_url)}" for r in remotes)
    return (
        f"To fetch it by hand, download these files into one folder (any machine with a browser):\n"
        f"{urls}\nthen run:  expertlm bench fetch brainbench --out {out} --from-dir FOLDER"
    )


def bench_fetch(name: str, out: str | Path, *, overwrite: bool = False, show_progress: bool = True,
                **options) -> Path:  # fmt: skip
    """Download a published benchmark (`brainbench`) into the folder `out`, checked, with a
    manifest of sources, commits, row counts and sha256. `options` are the fields of
    `FetchConfig`; `from_dir`: take the files from a local folder instead (downloaded by hand)
    and check them the same way."""
    if name not in BENCHMARKS:
        raise ExpertlmError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    cfg = FetchConfig.from_options({"name": name, **options})
    base_url, from_dir = cfg.base_url, cfg.from_dir
    remotes = BENCHMARKS[name]
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[from_dir] if from_dir else [])
    if from_dir is not None and not Path(from_dir).is_dir():
        raise ExpertlmError(f"{from_dir}: no such folder")
    http = Http(rate=FETCH_RATE, retries=FETCH_RETRIES)
    files: dict[str, dict] = {}
    with atomic_dir(out, overwrite) as tmp:
        for remote in remotes:
            dest = tmp / remote.name
            if from_dir is not None:
                src = Path(from_dir) / remote.name
                if not src.is_file():
                    raise ExpertlmError(
                        f"{src}: missing (expected the files {', '.join(r.name for r in remotes)})"
                    )
                shutil.copyfile(src, dest)
                origin = str(src)
            else:
                origin = remote.url(base_url)
                info(f"downloading {origin}")
                try:
                    dest.write_bytes(http.request(origin))
                except DownloadError:
                    info(_manual_steps(remotes, base_url, out))
                    raise
            facts = remote.check(dest)
            files[remote.name] = {
                "source": origin,
                "repo": remote.repo,
                "commit": remote.commit,
                "path": remote.path,
                "bytes": dest.stat().st_size,
                "sha256": sha256_file(dest),
                **facts,
            }
        write_json(
            tmp / "manifest.json",
            {"format": "expertlm.bench-fetch/1", "benchmark": name, "files": files, **provenance()},
        )
    for fname, facts in files.items():
        info(f"  {fname}: {facts['rows']} rows, sha256 {facts['sha256'][:12]}")
    info(f"{name}: {len(files)} files checked -> {out}")
    return out


__all__ = ["bench_fetch"]

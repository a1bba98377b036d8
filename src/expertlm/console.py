"""Console output: messages and rich progress bars, all on stderr so stdout stays for data."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

console = Console(stderr=True, highlight=False)


# Messages are plain text (paths may contain "[...]", which rich would read as markup) and are
# never hard-wrapped: a path split over two lines cannot be copied or grepped from a log.
def info(msg: str) -> None:
    console.print(escape(msg), soft_wrap=True)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(msg)}", soft_wrap=True)


def progress_enabled(requested: bool = True) -> bool:
    """Progress bars unless asked not to, or when EXPERTLM_NO_PROGRESS is set (tests, CI logs)."""
    return requested and not os.environ.get("EXPERTLM_NO_PROGRESS")


class RateColumn(ProgressColumn):
    """`count unit/s` from a task field (e.g. documents per second beside a bytes bar)."""

    def __init__(self, field: str, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        count = task.fields.get(self.field, 0)
        elapsed = task.elapsed or 0.0
        rate = count / elapsed if elapsed > 0 else 0.0
        return Text(
            f"{count:,} {self.unit} ({rate:,.0f} {self.unit}/s)", style="progress.data.speed"
        )


def bytes_progress(unit: str, enabled: bool = True) -> Progress:
    """A bar over input bytes showing MB/s, a count of `unit` with its rate, and the ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        RateColumn("count", unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress_enabled(enabled),
    )


class SpeedColumn(ProgressColumn):
    """Items per second of a count bar."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "-/s", style="progress.data.speed")


def count_progress(enabled: bool = True) -> Progress:
    """A bar over a known number of items with its rate and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress_enabled(enabled),
    )

"""Every `expertlm ...` command written in README.md and docs/*.md names a real command and only
options that command has (commands in code blocks, with their line continuations, and inline
`expertlm ...` spans). A renamed flag or verb fails here before a user copies it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from expertlm.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a shell line whose program is expertlm (after env assignments, torchrun/srun/time and options)
START = re.compile(r"^(\$ )?(\w+=\S+ )*((torchrun|srun|time|python -m)( \S+)*? )?expertlm ")


def commands(text: str):
    """(line, command, inline) for each expertlm command of a Markdown text."""
    in_code, buf, start = False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_code, buf = not in_code, ""
            continue
        if not in_code:
            for m in re.finditer(r"`(expertlm [^`]+)`", line):
                yield n, m.group(1), True
            continue
        s = line.strip()
        if buf:
            buf += " " + s
        elif START.match(s):
            buf, start = s, n
        else:
            continue
        if buf.endswith("\\"):
            buf = buf[:-1]
            continue
        yield start, buf, False
        buf = ""


def problems(cmd: str, inline: bool) -> list[str]:
    cmd = re.split(r" #|&&|\|\||[|;>]", cmd)[0]
    try:
        args = shlex.split(cmd[cmd.find("expertlm ") :])[1:]
    except ValueError:
        return [f"not a shell command: {cmd!r}"]
    node, path = app, []
    while isinstance(node, click.Group) and args and args[0] in node.commands:
        node = node.commands[args[0]]
        path.append(args.pop(0))
    if isinstance(node, click.Group):
        word = args[0] if args else ""
        # (prose may write `expertlm corpus` for the group; a word that is no verb is wrong)
        return [f"unknown command: {' '.join(['expertlm', *path, word])}"] if word and not word.startswith("-") and not inline else []  # fmt: skip
    known = {"--help"}
    for p in node.params:
        known.update(getattr(p, "opts", []), getattr(p, "secondary_opts", []))
    return [f"{' '.join(path)}: no option {a.split('=')[0]}" for a in args
            if a.startswith("--") and a.split("=")[0] not in known
            and "..." not in a and "[" not in a]  # fmt: skip


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_commands_exist(doc):
    found = list(commands(doc.read_text(encoding="utf-8")))
    bad = [f"{doc.name}:{n}: {why}" for n, cmd, inline in found for why in problems(cmd, inline)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_commands_and_catches_a_wrong_flag():
    text = "```bash\nexpertlm train SH \\\n  --out RUN --max-tokens 10\nexpertlm corpus bulid X\n```\n`expertlm train SH --nope 1`"
    found = list(commands(text))
    assert [(n, inline) for n, _, inline in found] == [(2, False), (4, False), (6, True)]
    assert [problems(c, i) for _, c, i in found] == [
        [], ["unknown command: expertlm corpus bulid"], ["train: no option --nope"]]  # fmt: skip
    assert sum(1 for doc in DOCS for _ in commands(doc.read_text(encoding="utf-8"))) > 100

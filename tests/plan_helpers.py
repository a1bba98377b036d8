"""Shared by the plan-validation tests (test_plan.py, test_plan_post.py, test_filter_plan.py):
edit an experiment dict by dotted key, write it, and check that planning it reports a problem
under a key, before any compute."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expertlm.errors import ExpertlmError
from expertlm.experiment import plan_experiment

DELETE = object()  # as a value: remove the key (or the list entry)


def set_key(exp: dict, path: str, value) -> None:
    """`exp[a][b][0][c] = value` for path "a.b.0.c"; a variant index one past the end appends."""
    *parents, last = path.split(".")
    if parents == ["variants"] and int(last) >= len(exp["variants"]):
        exp["variants"].append(value)
        return
    node = exp
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is DELETE:
        node.pop(int(last) if isinstance(node, list) else last)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def write(tmp_path: Path, exp: dict) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(exp, sort_keys=False), encoding="utf-8")
    return p


def expect_problem(tmp_path: Path, exp: dict, edits, what: str, key: str, fragment: str) -> None:
    """Planning `exp` with `edits` fails with a line under `key` holding `fragment`; every line
    of the error names the file and a key; nothing is written."""
    for path, value in edits:
        set_key(exp, path, value)
    p = write(tmp_path, exp)
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(p, out=tmp_path / "out")
    lines = [ln for ln in str(e.value).splitlines() if f"key '{key}" in ln]
    assert lines, f"{what}: no problem under '{key}' in:\n{e.value}"
    assert any(fragment in ln for ln in lines), f"{what}: {lines}"
    assert all(ln.startswith(f"{p}: key '") for ln in str(e.value).splitlines())
    assert not (tmp_path / "out").exists()

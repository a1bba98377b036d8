"""Experiments: a grid of variants from one file (`spec.py`), planned as stages of the
registered kinds (`stages.py`, `plan.py`), run (`graph.py`; `budget.py` for --dry-run) and reported (`report.py`).
"""

_EXPORTS = {"demo": "graph", "plan_experiment": "graph", "run": "graph", "print_plan": "budget",
            "training_budget": "budget", "load_experiment": "spec"}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use: the command line reads the stage registry (stages.py) from this
    # package and should not import the planner and its dependencies to print --help.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"expertlm.experiment.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'expertlm.experiment' has no attribute {name!r}")

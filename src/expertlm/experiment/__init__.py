"""Experiments: a grid of variants from one file (`spec.py`), planned as stages (`plan.py`,
`stages.py`), run (`run.py`) and reported (`report.py`)."""

from expertlm.experiment.run import demo, plan_experiment, print_plan, run, training_budget
from expertlm.experiment.spec import load_experiment

__all__ = ["demo", "load_experiment", "plan_experiment", "print_plan", "run", "training_budget"]

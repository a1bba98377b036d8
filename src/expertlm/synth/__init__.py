"""The synthetic literature world: a seeded field with a hidden ground truth (`world.py`), its
literature and benchmark abstracts (`writer.py`, `bench.py`), the ceilings no model can beat
(`baselines.py`), and the `corpus synth` stage that writes them (`build.py`)."""

from expertlm.synth.build import corpus_synth

__all__ = ["corpus_synth"]

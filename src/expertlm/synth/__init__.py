"""The synthetic literature world: a seeded field with a hidden ground truth (`world.py`), its
literature and benchmark abstracts (`writer.py`, `benchmark.py`), the ceilings no model can beat
(`baselines.py`), its options (`config.py`), and the `corpus synth` stage that writes them
(`build.py`)."""

__all__ = ["corpus_synth"]


def __getattr__(name: str):
    # Imported on first use: the command line reads SynthConfig without the generator's numpy.
    if name == "corpus_synth":
        from expertlm.synth.build import corpus_synth

        return corpus_synth
    raise AttributeError(f"module 'expertlm.synth' has no attribute {name!r}")

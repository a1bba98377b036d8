"""The corpus stage: read sources, clean, filter, deduplicate, decontaminate, split.

A corpus folder holds `train.jsonl.gz`, `val.jsonl.gz` and `manifest.json`; `docs.py` owns
that format, `build.py` is the stage.
"""

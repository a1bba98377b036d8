"""Peak memory of `expertlm merge` against the size of one model, on gpt2-small-sized models.

Models: three randomly initialised GPT-2s of gpt2-small's shape (124M parameters, vocab 50,257,
context 1,024, tied embeddings; seeds 0, 1, 2), saved with `save_pretrained` as float32
safetensors (~498 MB each), built here in a temporary folder and deleted at the end.

Each merge runs in a fresh process (`python -c "...merge(...)"`), and its peak resident set size
is the kernel's high-water mark for that process (VmHWM in /proc/self/status, read by the process
as it ends): interpreter, torch and every buffer included. The baseline is the same for a process
that only imports expertlm.merge. The models are built in another process, so the parent never
holds them (a forked child inherits its parent's ru_maxrss, which is why VmHWM is read instead).
Merges: linear and SLERP of the first two models, TIES and task arithmetic of the first two
relative to the third (a base). The linear output is checked against the closed form on one tensor.

Target: peak RSS < 2 x the model's file size for every merge (the process's whole peak, not
the part above the baseline). The last line is
`merge_memory: <worst peak / model size>x (target < 2x) PASS|FAIL`.

Run: python bench/merge_memory.py     (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0
MERGES = {
    "linear": "method='linear'",
    "slerp": "method='slerp', t=0.5",
    "ties": "method='ties', base=BASE, density=0.2",
    "task_arithmetic": "method='task_arithmetic', base=BASE, lam=0.5",
}


BUILD = """
import sys
from expertlm.models import build_model, gpt2_config
for seed, folder in enumerate(sys.argv[1:]):
    model = build_model(gpt2_config("gpt2-small", vocab_size=50_257, eot_id=50_256), seed=seed)
    model.save_pretrained(folder, safe_serialization=True)
"""
HWM = "; print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"


def peak_rss(code: str) -> tuple[int, float]:
    """Peak RSS in bytes of a fresh Python process running `code`, and its wall time."""
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1")
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code + HWM], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {code}\n{proc.stderr}")
    kib = int(proc.stdout.split("VmHWM")[-1].split()[0])
    return kib * 1024, time.time() - t0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="merge-memory-") as tmp:
        root = Path(tmp)
        t0 = time.time()
        a, b, base = (root / f"m{seed}" for seed in range(3))
        subprocess.run([sys.executable, "-c", BUILD, str(a), str(b), str(base)], check=True,
                       capture_output=True)  # fmt: skip
        size = (a / "model.safetensors").stat().st_size
        print(f"3 gpt2-small-sized models built in {time.time() - t0:.0f} s; "
              f"model.safetensors {size / 1e6:,.1f} MB each")  # fmt: skip
        baseline, _ = peak_rss("import expertlm.merge")
        print(f"baseline (python + import expertlm.merge): {baseline / 1e6:,.0f} MB "
              f"({baseline / size:.2f}x)\n")  # fmt: skip
        print(
            f"{'method':<16} {'wall s':>7} {'peak MB':>8} {'peak/model':>11} {'above baseline':>15}"
        )
        worst = 0.0
        for name, args in MERGES.items():
            out = root / f"out-{name}"
            code = (f"from expertlm.merge import merge; BASE = {str(base)!r}; "
                    f"merge([{str(a)!r}, {str(b)!r}], {str(out)!r}, {args}, show_progress=False)")  # fmt: skip
            peak, wall = peak_rss(code)
            ratio = peak / size
            worst = max(worst, ratio)
            print(f"{name:<16} {wall:>7.1f} {peak / 1e6:>8,.0f} {ratio:>10.2f}x "
                  f"{(peak - baseline) / size:>14.2f}x")  # fmt: skip
            if name == "linear":
                check_linear(a, b, out)
            for f in out.iterdir():
                f.unlink()
            out.rmdir()
    verdict = "PASS" if worst < TARGET else "FAIL"
    print(f"merge_memory: {worst:.2f}x (target < {TARGET:g}x) {verdict}")


def check_linear(a: Path, b: Path, out: Path) -> None:
    import torch
    from safetensors import safe_open

    name = "transformer.h.0.attn.c_attn.weight"
    t = {}
    for key, folder in (("a", a), ("b", b), ("out", out)):
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            t[key] = f.get_tensor(name).clone()
    torch.testing.assert_close(t["out"], (t["a"] + t["b"]) / 2)


if __name__ == "__main__":
    main()

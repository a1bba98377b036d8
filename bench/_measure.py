"""What the benchmarks share: run a command in a fresh process, measure its wall time, CPU time
and the peak summed RSS of its whole process tree (workers included), and say the load."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def measure(cmd: list[str], env: dict | None = None, interval_s: float = 0.1) -> dict:
    """Run `cmd`, sampling its process tree every `interval_s`: wall seconds; CPU seconds of the
    tree (`cpu_s`) and of the busiest thread of the first process (`serial_cpu_s`: what more
    cores cannot shorten); peak RSS bytes of the tree (`peak_rss`), of the first process
    (`root_rss`) and of the other processes together (`children_rss`, with the most there were
    at once, `children`); the CPU seconds the sampling itself took (`sampler_cpu_s`); stdout.
    A failing command stops the benchmark with its stderr.

    The sampler shares the machine with what it measures. Every 10 ms it took ~20% of a core
    (4.3 CPU s in a 22 s `corpus build` on 2 cores), which slowed a run that used every core by
    12% and a one-process run not at all; every 0.1 s it takes ~2.5% (0.52 CPU s in an 18.9 s
    build). A peak shorter than the interval can be missed, which the stages measured here
    (memory that plateaus) do not have."""
    import psutil  # (here: the GPU benchmarks import this module where psutil may be missing)

    t0 = time.perf_counter()
    own0 = time.process_time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    ps = psutil.Process(proc.pid)
    peak = root_peak = children_peak = most = 0
    cpu: dict[int, float] = {}
    threads: dict[int, float] = {}
    while proc.poll() is None:
        try:
            children = ps.children(recursive=True)
            with ps.oneshot():
                root = ps.memory_info().rss
                for t in ps.threads():
                    threads[t.id] = t.user_time + t.system_time
                c = ps.cpu_times()
                cpu[ps.pid] = c.user + c.system
            rest = 0
            for p in children:
                with p.oneshot():
                    rest += p.memory_info().rss
                    c = p.cpu_times()
                    cpu[p.pid] = c.user + c.system
            peak, root_peak = max(peak, root + rest), max(root_peak, root)
            children_peak, most = max(children_peak, rest), max(most, len(children))
        except psutil.Error:
            pass
        time.sleep(interval_s)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values()), "serial_cpu_s": max(threads.values(), default=0.0),
            "sampler_cpu_s": time.process_time() - own0, "peak_rss": peak, "root_rss": root_peak, "children_rss": children_peak,
            "children": most, "stdout": out}  # fmt: skip


def load() -> str:
    """`uptime`'s load averages, for the record beside every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def device_seconds(prof) -> float:
    """Seconds of device (CUDA) kernels and copies in a `torch.profiler` trace; NaN when it
    recorded none (a CPU run). Far less than the wall time: the GPU waited on the host."""
    import torch

    cuda = torch.autograd.DeviceType.CUDA
    spans = [e.device_time_total for e in prof.events() if e.device_type == cuda]
    return sum(spans) / 1e6 if spans else float("nan")

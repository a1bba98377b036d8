"""Rank, world size and device from the torchrun environment; wrapping a model in DDP.

The training loop asks this module and nothing else about processes: one CPU process, one GPU,
or `torchrun --nproc-per-node N` on many nodes all run the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from expertlm.errors import ExpertlmError


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(device: str | None, local_rank: int = 0) -> torch.device:
    """The device named (cpu, cuda, cuda:N, mps; None or auto: this process's GPU when there is
    one, else the CPU). A name this machine has no device for is a user error."""
    if device in (None, "auto"):
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ExpertlmError(f"option --device: unknown device '{device}' (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ExpertlmError(f"option --device: '{device}' asked for, but no CUDA device is available")
        dev = dev if dev.index is not None else torch.device(f"cuda:{local_rank}")
        if dev.index >= count:
            raise ExpertlmError(f"option --device: '{device}': this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ExpertlmError(f"option --device: '{device}' asked for, but MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ExpertlmError(f"option --device: '{device}' is not supported (cpu, cuda, cuda:N, mps)")
    return dev


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls in hardware (`--bf16 auto`): a CUDA GPU that supports
    bf16 (Ampere and later), or a CPU with AVX-512 BF16 or AMX (Intel Cooper Lake, Sapphire Rapids
    and later; AMD Zen 4 and later). Elsewhere bf16 autocast is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # (private: absent, no)
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def init(device: str | None = None) -> Dist:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a Hugging Face causal LM (GPT-2, Llama/Mistral/Qwen, GPT-NeoX)."""
    for path in ("transformer.h", "model.layers", "gpt_neox.layers"):
        node = model
        for attr in path.split("."):
            node = getattr(node, attr, None)
        if isinstance(node, torch.nn.ModuleList):
            return list(node)
    raise ExpertlmError(f"--fsdp: cannot find the transformer blocks of {type(model).__name__}")


def wrap(model: torch.nn.Module, d: Dist, fsdp: bool = False) -> torch.nn.Module:
    """DDP (a full copy per device), or with `fsdp` FSDP2: parameters, gradients and optimizer
    state sharded per transformer block, for models that do not fit one device."""
    if d.world == 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in transformer_blocks(model):
            fully_shard(block)
        fully_shard(model)  # in place: `model` itself is now sharded
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[d.device.index] if d.device.type == "cuda" else None
    )


def all_mean(value: float, d: Dist) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    torch.distributed.all_reduce(t)
    return t.item() / d.world


def barrier(d: Dist) -> None:
    if d.world > 1:
        torch.distributed.barrier()


def close(d: Dist) -> None:
    if d.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

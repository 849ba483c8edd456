"""Where a process stands in a training run: alone, or one of several that torchrun started (PyTorch's DDP,
gloo on the CPU, NCCL on GPUs). Training (train.py) and scoring (evaluation.py) share it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on the process that writes checkpoints and prints."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over the processes (a no-op alone)."""
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor


ALONE = Distributed()  # a run of one process


def start_distributed(device_request: str | None) -> tuple[Distributed, torch.device]:
    """Joins the torchrun process group when there is one; picks this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (device_request is None or device_request.startswith("cuda"))
    if world_size > 1:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        dist = Distributed(rank, world_size, local_rank)
        device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    else:
        dist = ALONE
        device = torch.device(device_request) if device_request else torch.device("cuda" if cuda else "cpu")
    return dist, device

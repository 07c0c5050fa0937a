"""Collectives that are no-ops in a single process, and the per-GPU process launcher.

Gradients are summed over every chunk of the global batch on every rank (a world-size
independent definition: one process with k accumulation rounds computes the same sum as k
processes with one round each).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ProcessGroupInfo:
    rank: int = 0
    world_size: int = 1
    # A gloo group of the same processes for flags the host decides on (stop requests): over
    # NCCL, reading the agreed flag back would wait for every kernel queued so far, each step.
    flags: object | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, group: ProcessGroupInfo) -> bool:
    """True on every rank when it is True on at least one (stop requests); a host-side
    exchange, so the GPUs' queued work goes on meanwhile."""
    if not active():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group.flags)
    return bool(value.item())


def all_gather_objects(obj) -> list:
    if not active():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `tensor` (same shape on all), gathered on the device without a host copy."""
    if not active():
        return [tensor]
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return gathered


def sum_gradients_(params: list[torch.nn.Parameter]) -> None:
    """Sums .grad over ranks in one flat all-reduce; missing grads count as zeros."""
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if active():
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        grads = [f.view_as(p) for f, p in zip(flat.split([p.numel() for p in params]), params)]
    for param, grad in zip(params, grads):
        param.grad = grad


def init_process_group(rank: int, world_size: int, master_addr: str, master_port: int,
                       device: torch.device, timeout_s: float = 1800) -> ProcessGroupInfo:
    """NCCL on GPUs, gloo on CPU; an explicit TCP rendezvous (no shared file system needed).
    Host flags get a gloo group of their own on every backend, so CPU runs test that path."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend=backend, init_method=f"tcp://{master_addr}:{master_port}", rank=rank,
        world_size=world_size, timeout=timeout,
        **({"device_id": device} if device.type == "cuda" else {}),
    )
    flags = dist.new_group(backend="gloo", timeout=timeout)
    log.info("rank %d/%d joined (%s via %s:%d)", rank, world_size, backend, master_addr, master_port)
    return ProcessGroupInfo(rank=rank, world_size=world_size, flags=flags)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_device(local_rank: int, use_cuda: bool) -> torch.device:
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


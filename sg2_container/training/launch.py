"""One training process per GPU (gloo processes on a CPU machine), on one or several hosts.

The caller's stop event is mirrored into the workers, which finish their step, save and exit.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading

import torch
import torch.multiprocessing as mp

from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions
from sg2_container.training import distributed as dist_utils

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where this node sits in a multi-host job (defaults: a single machine)."""

    num_nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None


def run_training(options: TrainingOptions, stop_event: threading.Event | None = None,
                 topology: Topology = Topology()):
    """Runs training in this process (1 process in all) or in `options.gpus` workers."""
    from sg2_container.training.loop import train

    use_cuda = torch.cuda.is_available() and options.device in ("auto", "cuda")
    if use_cuda and options.gpus > torch.cuda.device_count():
        raise UserError(f"gpus={options.gpus} but only {torch.cuda.device_count()} GPU(s) are visible")
    world_size = options.gpus * topology.num_nodes
    if world_size == 1:
        return train(options, stop_event=stop_event)

    port = topology.master_port or dist_utils.free_port()
    ctx = mp.get_context("spawn")
    worker_stop = ctx.Event()
    results = ctx.SimpleQueue()
    workers = []
    for local_rank in range(options.gpus):
        rank = topology.node_rank * options.gpus + local_rank
        process = ctx.Process(target=_worker, daemon=False, args=(
            options, local_rank, rank, world_size, topology.master_addr, port, use_cuda,
            worker_stop, results))
        process.start()
        workers.append(process)

    joined = threading.Event()

    def mirror_stop():
        # Only this flag is shared: Process objects are not thread-safe (a poll from here can
        # reap a worker under join() and leave its exit code unknown).
        while not joined.is_set():
            if stop_event is not None and stop_event.wait(0.2):
                worker_stop.set()
                return
            if stop_event is None:
                joined.wait(0.2)

    threading.Thread(target=mirror_stop, daemon=True).start()
    for process in workers:
        process.join()
    joined.set()
    failed = [(i, p.exitcode) for i, p in enumerate(workers) if p.exitcode != 0]
    outcome = None
    while not results.empty():
        kind, payload = results.get()
        if kind == "error" and outcome is None:
            outcome = payload
        elif kind == "result":
            outcome = outcome if isinstance(outcome, str) else payload
    if isinstance(outcome, str):
        raise UserError(outcome)
    if failed:
        raise RuntimeError(f"training worker(s) failed: {', '.join(f'local rank {i} exit {c}' for i, c in failed)}")
    return outcome


def _worker(options, local_rank, rank, world_size, master_addr, port, use_cuda, stop, results):
    """Entry point of one spawned training process."""
    from sg2_container.training.loop import train

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sets `stop`
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    device = dist_utils.local_device(local_rank, use_cuda)
    try:
        dist_utils.init_process_group(rank, world_size, master_addr, port, device)
        result = train(options, stop_event=stop, device=device,
                       group=dist_utils.ProcessGroupInfo(rank=rank, world_size=world_size))
        if rank == 0:
            results.put(("result", result))
    except UserError as error:
        results.put(("error", str(error)))
        raise SystemExit(1)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

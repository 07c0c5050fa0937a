"""One training process per GPU (gloo processes on a CPU machine), on one or several hosts.

The caller's stop event is mirrored into the workers, which finish their step, save and exit.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time

import torch
import torch.multiprocessing as mp

from sg2_container.errors import UserError
from sg2_container.io.allocator import keep_freed_memory
from sg2_container.io.cores import usable_cores
from sg2_container.io.logs import configure_logging, configured_level
from sg2_container.io.signals import ignore_stop_signals, stop_on_signals
from sg2_container.options import TrainingOptions
from sg2_container.training import distributed as dist_utils
from sg2_container.training.run_folder import check_run_folder

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where this node sits in a multi-host job (defaults: a single machine)."""

    num_nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None


def _wants_cuda(device: str) -> bool:
    if device == "auto":
        return torch.cuda.is_available()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={device!r} asked for, but PyTorch sees no CUDA GPU")
        return True
    return False


def check_start(options: TrainingOptions,
                topology: Topology = Topology()) -> torch.device | None:
    """What a start needs of this machine (the devices and processes, the run folder), checked
    before anything is spawned. Returns the device of a one-process run; None when workers
    each take their own (the parent then keeps no CUDA context)."""
    from sg2_container.runtime import resolve_device

    use_cuda = _wants_cuda(options.device)
    if use_cuda and options.gpus > torch.cuda.device_count():
        raise UserError(f"gpus={options.gpus} is not allowed: only {torch.cuda.device_count()} "
                        "GPU(s) are visible")
    cores = usable_cores()
    if not use_cuda and options.gpus > cores:
        raise UserError(f"gpus={options.gpus} is not allowed: no GPU is used and this machine "
                        f"gives {cores} CPU core(s); one process per core at most")
    check_run_folder(options.outdir)
    if options.gpus * topology.num_nodes > 1:
        return None
    return resolve_device(options.device)


def run_training(options: TrainingOptions, stop_event: threading.Event | None = None,
                 topology: Topology = Topology()):
    """Runs training in this process (1 process in all) or in `options.gpus` workers."""
    from sg2_container.training.loop import train

    device = check_start(options, topology)
    if device is not None:
        return train(options, stop_event=stop_event, device=device)
    use_cuda = _wants_cuda(options.device)
    world_size = options.gpus * topology.num_nodes

    port = topology.master_port or dist_utils.free_port()
    ctx = mp.get_context("spawn")
    worker_stop = ctx.Event()
    results = ctx.SimpleQueue()
    workers = []
    for local_rank in range(options.gpus):
        rank = topology.node_rank * options.gpus + local_rank
        process = ctx.Process(target=_worker, daemon=False, args=(
            options, local_rank, rank, world_size, topology.master_addr, port, use_cuda,
            worker_stop, results, configured_level()))
        process.start()
        workers.append(process)

    failed = _supervise(workers, stop_event, worker_stop)
    outcome = None
    while not results.empty():
        kind, payload = results.get()
        if kind == "error" and outcome is None:
            error_class, message = payload  # its own class (e.g. TrainingDiverged), by name
            outcome = (error_class if issubclass(error_class, UserError) else UserError)(message)
        elif kind == "result":
            outcome = outcome if isinstance(outcome, UserError) else payload
    if isinstance(outcome, UserError):
        raise outcome
    if failed:
        raise RuntimeError("training worker(s) failed: "
                           + ", ".join(f"local rank {i} exit {c}" for i, c in failed)
                           + " (the worker's traceback is in the log above)")
    return outcome


STOP_GRACE_S = 90.0  # SageMaker sends SIGKILL 120 s after SIGTERM


def _supervise(workers, stop_event, worker_stop, grace_s: float = 30.0,
               stop_grace_s: float = STOP_GRACE_S) -> list[tuple[int, int]]:
    """Waits for the workers, mirroring a stop request into them. When one dies, the others
    would wait in a collective until its timeout (30 minutes on GPUs): stop them instead. A
    worker still running `stop_grace_s` after a stop request is blocked where it cannot see
    the request (waiting for a host that never joins the process group): it is killed."""
    deadline = stop_deadline = None
    while True:
        codes = [p.exitcode for p in workers]  # poll() from this thread only
        if all(code is not None for code in codes):
            return [(i, c) for i, c in enumerate(codes) if c != 0]
        if stop_event is not None and stop_event.is_set() and not worker_stop.is_set():
            worker_stop.set()
            stop_deadline = time.monotonic() + stop_grace_s
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            log.error("training worker(s) still running %.0f s after the stop request (blocked, "
                      "e.g. waiting for another host to join): killed", stop_grace_s)
            for p in workers:
                if p.exitcode is None:
                    p.kill()
            stop_deadline = None
        if any(code not in (None, 0) for code in codes):
            if deadline is None:
                log.error("a training worker exited with %s; stopping the others",
                          [c for c in codes if c not in (None, 0)])
                deadline = time.monotonic() + grace_s
                for p in workers:
                    if p.exitcode is None:
                        p.terminate()
            elif time.monotonic() > deadline:
                for p in workers:
                    if p.exitcode is None:
                        p.kill()
        for p in workers:
            p.join(timeout=0.1)


class _EitherEvent:
    """is_set() when either of two events is."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()


def _worker(options, local_rank, rank, world_size, master_addr, port, use_cuda, stop, results,
            log_level=None):
    """Entry point of one spawned training process; `log_level`: the parent's (sg2 -q / -v)."""
    configure_logging(log_level, stream=sys.stdout, prefix=f"rank{rank} ")
    ignore_stop_signals((signal.SIGINT,))  # the parent decides; it sets `stop`
    keep_freed_memory()  # a spawned process starts with malloc's defaults again
    # A multiprocessing Event takes a lock even in is_set(), which the loop calls every step:
    # setting it from a signal handler could deadlock. The handler sets a thread Event instead.
    with stop_on_signals((signal.SIGTERM,), doing="saving a checkpoint with the others") as term:
        _work(options, local_rank, rank, world_size, master_addr, port, use_cuda,
              _EitherEvent(term, stop), results)


def _work(options, local_rank, rank, world_size, master_addr, port, use_cuda, stop, results):
    """Trains as one rank of the process group; a UserError travels to the parent."""
    from sg2_container.runtime import check_gpu_supported, check_ops_request
    from sg2_container.training.loop import train

    device = dist_utils.local_device(local_rank, use_cuda)
    try:
        if use_cuda:  # here, not in the parent, which keeps no CUDA context of its own
            check_gpu_supported(device)
        check_ops_request(device)
        group = dist_utils.init_process_group(rank, world_size, master_addr, port, device)
        result = train(options, stop_event=stop, device=device, group=group)
        if rank == 0:
            results.put(("result", result))
        # Tear the group down together: a rank that leaves while another still writes its
        # checkpoint has aborted in gloo's teardown ("terminate called ...").
        torch.distributed.barrier()
    except UserError as error:
        # The class travels as a reference and the message as text: every UserError is built
        # from its message alone, so the parent raises the same error whatever it holds.
        results.put(("error", (type(error), str(error))))
        raise SystemExit(1)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

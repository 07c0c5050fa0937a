"""Small timing helpers shared by the benchmarks (CPU and CUDA aware)."""
from __future__ import annotations

import platform
import resource
import statistics
import subprocess
import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 2, repeat: int = 5,
              min_seconds: float = 0.0) -> float:
    """Median seconds per call after warm-up; repeats until `min_seconds` have passed."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    start_all = time.perf_counter()
    while len(samples) < repeat or time.perf_counter() - start_all < min_seconds:
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_alternating(*fns: Callable[[], object], repeat: int) -> list[float]:
    """Median seconds per call of each CPU callable, their calls interleaved after one warm-up
    each, so that a shared machine's drift falls on all of them alike."""
    for fn in fns:
        fn()
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for fn, times in zip(fns, samples):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def peak_memory(device: torch.device) -> str:
    """The peak the benchmarks print: GPU memory on a GPU, the process's RSS on a CPU."""
    if device.type == "cuda":
        return f"peak GPU mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return f"peak RSS {peak_rss_gib():.2f} GiB (process so far)"


def machine_description(device: torch.device) -> str:
    """One line naming the hardware, for docs/benchmarks.md."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or "cpu"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def malloc_as_sg2() -> str:
    """Sets malloc up as sg2's entry points do (sg2_container/io/allocator.py: freed memory
    kept for reuse) and says how it is set, for the benchmarks that time an sg2 command's path:
    with glibc's defaults paper256 generation at batch 1 took 1.4-3.5x as long on a shared
    2-core CPU (bench.generate, alternating runs with SG2_KEEP_FREED_MEMORY=0 and 1)."""
    from sg2_container.io.allocator import ENV_SWITCH, keep_freed_memory

    if keep_freed_memory():
        return "malloc keeps freed memory, as sg2's entry points set it"
    return f"malloc as it was ({ENV_SWITCH}=0, or not glibc): not as sg2 runs"


def preset_generator(cfg: str, resolution: int, device: torch.device):
    """A random-weight G_ema as a training run of `cfg` saves it (fp16 top blocks on a GPU
    only), in eval mode without gradients: what the inference benchmarks render with."""
    from sg2_container.models.networks import Generator
    from sg2_container.options import network_kwargs, resolve_preset

    G_kwargs, _ = network_kwargs(resolve_preset(cfg, resolution), resolution,
                                 fp32=device.type != "cuda")
    return Generator(**G_kwargs).eval().requires_grad_(False).to(device)

"""Benchmark the endpoint: requests/s and p50/p99 latency at concurrency 1, 8 and 32, with
batching on and off, in one run (a fresh `sg2 serve` subprocess per setting), and the server's
overhead at concurrency 1 over a bare forward pass of the same network in this process.

Network: 64x64 px, z/w 64, 2 mapping layers, channel_base 512 / channel_max 16 (random
weights): small enough for a CPU, large enough that the forward dominates a request.
Each request asks for one seed with Accept: application/x-npy (raw pixels: no PNG encoding).
Usage: python bench/serve.py [--seconds 6] [--device cpu]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETWORK = dict(z_dim=64, w_dim=64, img_resolution=64, img_channels=3, c_dim=0,
               mapping_kwargs=dict(num_layers=2),
               synthesis_kwargs=dict(channel_base=512, channel_max=16))
SETTINGS = {"batching on": ["--max-batch", "32", "--batch-wait-ms", "2"],
            "batching off": ["--max-batch", "1", "--batch-wait-ms", "0"]}
CONCURRENCY = (1, 8, 32)


def make_network(path: Path):
    import torch

    from sg2_container.models.files import save_model
    from sg2_container.models.networks import Generator

    torch.manual_seed(0)
    G = Generator(**NETWORK).eval()
    save_model(path, G_ema=G)
    return G


def bare_forward_ms(G, repeat: int = 30) -> float:
    """Median ms of G(z) for one seed, as `sg2 generate --batch 1` runs it."""
    import torch

    from sg2_container.inference.latents import z_for_seeds

    times = []
    with torch.no_grad():
        for seed in range(repeat + 3):
            z = torch.from_numpy(z_for_seeds([seed], G.z_dim)).float()
            started = time.perf_counter()
            G(z, None, noise_mode="const")
            times.append(time.perf_counter() - started)
    return float(np.median(times[3:]) * 1000)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load(url: str, clients: int, seconds: float) -> dict:
    """`clients` threads sending requests for `seconds`, timed from when all are ready (making
    32 httpx clients takes a while under the GIL: it is not the server's time)."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    window: dict[str, float] = {}

    def start_clock() -> None:
        window["start"] = time.monotonic()
        window["stop_at"] = window["start"] + seconds

    ready = threading.Barrier(clients, action=start_clock)

    def client_loop(index: int) -> None:
        seed = index * 100_000
        with httpx.Client(timeout=120) as client:
            ready.wait(timeout=120)
            while time.monotonic() < window["stop_at"]:
                started = time.perf_counter()
                answer = client.post(url + "/invocations", json={"seed": seed},
                                     headers={"Accept": "application/x-npy"})
                latencies.append(time.perf_counter() - started)
                errors[0] += answer.status_code != 200
                seed += 1

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client_loop, i) for i in range(clients)]:
            future.result()
    elapsed = time.monotonic() - window["start"]
    if not latencies:
        raise SystemExit(f"error: no request finished within {seconds} s at {clients} "
                         "client(s); give more --seconds")
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return dict(rps=len(latencies) / elapsed, p50=p50, p99=p99, n=len(latencies), errors=errors[0])


def run_setting(network: Path, args: list[str], seconds: float, device: str) -> dict:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get("PYTHONPATH")])))
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.executable, "-m", "sg2_container.cli.main", "-q", "serve",
                               "--network", str(network), "--port", str(port), "--device", device,
                               "--max-images", "64", *args], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/ping", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"server did not start:\n{log.read().decode()}")
            time.sleep(0.05)
        load(url, 4, 1.0)  # warm-up
        return {c: load(url, c, seconds) for c in CONCURRENCY}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="load per concurrency level")
    parser.add_argument("--device", default="cpu", help="the server's --device")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error(f"--seconds must be above 0, got {args.seconds}")
    import torch

    from bench.args import device
    from bench.timing import machine_description

    print(f"# machine: {machine_description(device(parser, args.device))}; load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        network = Path(tmp) / "bench64.pt"
        G = make_network(network)
        bare = bare_forward_ms(G)
        print(f"network: 64x64 px, channel_max 16; torch threads {torch.get_num_threads()}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print(f"bare forward, one seed, batch 1: {bare:.1f} ms")
        results = {name: run_setting(network, flags, args.seconds, args.device)
                   for name, flags in SETTINGS.items()}
    print(f"\n{'setting':<14} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'requests':>8} {'errors':>6}")
    for name, by_clients in results.items():
        for clients, r in by_clients.items():
            print(f"{name:<14} {clients:>7} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} "
                  f"{r['n']:>8} {r['errors']:>6}")
    on, off = results["batching on"], results["batching off"]
    for clients in CONCURRENCY:
        print(f"throughput ratio on/off at {clients:>2} clients: "
              f"{on[clients]['rps'] / off[clients]['rps']:.2f}x")
    for name, by_clients in results.items():
        print(f"server overhead at 1 client ({name}): p50 {by_clients[1]['p50'] - bare:.1f} ms "
              f"over the bare forward")


if __name__ == "__main__":
    main()

"""Real servers for the tests: a subprocess on 127.0.0.1 and a free port, logs to a file."""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx
import torch

from sg2_container.models.files import save_model
from sg2_container.models.networks import Generator

TINY_G = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=16))
REPO = pathlib.Path(__file__).resolve().parents[2]


def tiny_model(path: pathlib.Path, c_dim: int = 0, seed: int = 0, **overrides) -> Generator:
    torch.manual_seed(seed)
    G = Generator(c_dim=c_dim, img_channels=3, **dict(TINY_G, **overrides)).eval()
    save_model(path, G_ema=G)
    return G


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**extra: str) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


class Server:
    """`sg2 serve` (or any command line ending up in the server) as a real process."""

    def __init__(self, command: list[str], port: int, log: pathlib.Path, env: dict | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env or environment(), cwd=REPO)

    @classmethod
    def sg2_serve(cls, network: pathlib.Path, tmp_path: pathlib.Path, *args: str) -> "Server":
        port = free_port()
        command = [sys.executable, "-m", "sg2_container.cli.main", "serve", "--network",
                   str(network), "--port", str(port), *args]
        return cls(command, port, tmp_path / f"server-{port}.log")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ping_codes_until_ready(self, timeout: float = 90) -> list[int]:
        """The /ping status codes seen, polling from the first connection until a 200."""
        codes: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            try:
                codes.append(httpx.get(self.url + "/ping", timeout=5).status_code)
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            if codes[-1] == 200:
                return codes
            time.sleep(0.02)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def rss_bytes(self) -> int:
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()

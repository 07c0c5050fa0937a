"""The job's other config files: hosts (resourceconfig.json) and channels (inputdataconfig.json)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.sagemaker import paths

log = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = 7777
MASTER_PORT_ENV = "SG2_MASTER_PORT"


@dataclasses.dataclass(frozen=True)
class HostConfig:
    current_host: str = "algo-1"
    hosts: tuple[str, ...] = ("algo-1",)
    network_interface_name: str | None = None

    @property
    def master(self) -> str:
        return sorted(self.hosts)[0]

    @property
    def node_rank(self) -> int:
        return sorted(self.hosts).index(self.current_host)

    @property
    def num_nodes(self) -> int:
        return len(self.hosts)


def _read_config(path: Path) -> dict:
    """One of the platform's JSON config files, as an object; damage is named by the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path.name} ({path}) cannot be read as JSON: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path.name} ({path}) holds a JSON {type(data).__name__}, not an object")
    return data


def read_host_config(path: Path | None = None) -> HostConfig:
    path = path or paths.config_dir() / "resourceconfig.json"
    if not path.exists():
        return HostConfig()
    data = _read_config(path)
    hosts = tuple(data.get("hosts") or [data.get("current_host", "algo-1")])
    current = data.get("current_host", hosts[0])
    if current not in hosts:
        raise UserError(f"resourceconfig.json: current_host {current!r} is not among hosts {list(hosts)}")
    repeated = sorted({h for h in hosts if hosts.count(h) > 1})
    if repeated:  # two nodes would both take the rank of its first place and wait for a third
        raise UserError(f"resourceconfig.json: hosts {list(hosts)} names {', '.join(repeated)} "
                        "more than once; each host of the job must appear once")
    return HostConfig(current, hosts, data.get("network_interface_name"))


def master_port() -> int:
    return int(os.environ.get(MASTER_PORT_ENV, DEFAULT_MASTER_PORT))


def wait_for_hosts(hosts, timeout_s: float = 600, interval_s: float = 2) -> None:
    """Host names of a multi-node job may take minutes to resolve: retry, then fail clearly."""
    deadline = time.monotonic() + timeout_s
    pending = list(hosts)
    while pending:
        still = []
        for host in pending:
            try:
                socket.getaddrinfo(host, None)
            except socket.gaierror:
                still.append(host)
        pending = still
        if not pending:
            return
        if time.monotonic() > deadline:
            raise UserError(f"hosts {pending} did not resolve within {timeout_s:.0f}s")
        log.info("waiting for host names to resolve: %s", ", ".join(pending))
        time.sleep(interval_s)


def pipe_mode_channels() -> list[str]:
    """Channels inputdataconfig.json puts in Pipe mode: their data arrives as FIFOs
    (<channel>_0, ...) rather than a folder, and this image reads folders only."""
    path = paths.config_dir() / "inputdataconfig.json"
    if not path.exists():
        return []
    return sorted(name for name, channel in _read_config(path).items()
                  if isinstance(channel, dict) and channel.get("TrainingInputMode") == "Pipe")


def channel_dirs() -> dict[str, Path]:
    """Input channels present under <base>/input/data."""
    data_dir = paths.input_data_dir()
    if not data_dir.is_dir():
        return {}
    return {p.name: p for p in sorted(data_dir.iterdir()) if p.is_dir()}

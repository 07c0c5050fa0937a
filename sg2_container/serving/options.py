"""Settings of the HTTP server and its batcher, declared once with the option schema: `sg2
serve`'s flags and the container's SG2_* environment variables both come from these fields."""
from __future__ import annotations

import dataclasses

from sg2_container.options.schema import fail, option, validate

SAGEMAKER_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes: SageMaker's largest invocation body


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """What the server listens on, renders with, and how it batches."""

    network: str = option(metavar="FILE", hyperparameter=False, help=(
        "The model: our model file (.pt), a reference network pickle (.pkl, read safely), a "
        "training job's model.tar.gz, or a folder holding one of them."))
    host: str = option("127.0.0.1", hyperparameter=False, help=(
        "Address to listen on (0.0.0.0 for every interface, as in the container)."))
    port: int = option(8080, min=1, max=65535, hyperparameter=False, help="TCP port to listen on.")
    device: str = option("auto", help=(
        "Where to render: auto (every visible GPU, one model copy each; else the CPU), cpu, "
        "cuda, cuda:N, or a comma-separated list such as cuda:0,cuda:1."))
    max_batch: int = option(8, min=1, max=1024, help=(
        "Most images in one forward pass; 1 turns batching off."))
    batch_wait_ms: float = option(2.0, min=0, max=1000, help=(
        "How long the first queued request waits for company before its batch runs (2 ms: "
        "2x the throughput of no batching at 32 clients on a CPU, under 10 ms added latency "
        "for a lone client; docs/benchmarks.md)."))
    max_images: int = option(64, min=1, max=4096, help=(
        "Most images one request may ask for (more is a 400 error)."))
    max_queue: int = option(512, min=1, help=(
        "Most images waiting for the device; beyond it requests get 503 at once (back-pressure)."))
    request_timeout_s: float = option(55.0, min=0, min_exclusive=True, help=(
        "A request still waiting after this long gets 504 (SageMaker gives up at 60 s)."))
    drain_timeout_s: float = option(25.0, min=0, min_exclusive=True, help=(
        "On SIGTERM/SIGINT: how long in-flight requests may take to finish (SageMaker kills "
        "the container 30 s after SIGTERM)."))
    access_log: bool = option(False, is_flag=True, help="Log one line per request.")

    def __post_init__(self):
        validate(self)
        if not self.network:
            raise fail("network", self.network, "a model file")
        if not self.device.strip():
            raise fail("device", self.device, "auto, cpu, cuda, cuda:N or a comma-separated list")

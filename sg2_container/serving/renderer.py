"""One model copy on one device, rendering batches of requests in its own thread.

Batch company must not change a request's bytes. Two things make a row's result depend on the
batch on CPU BLAS/oneDNN (measured): matrix products pick different kernels for different row
counts, and a one-row forward takes other paths than a multi-row one. So the fully connected
layers compute row by row (their cost is tiny next to the convolutions), and every
forward has at least two rows (unless max_batch is 1; on a GPU: always exactly max_batch rows, one fixed shape, as
its convolution algorithms are chosen per shape). Padding rows are copies: the blocks that run
one sample at a time (a CPU's large ones) skip them, and no image of theirs comes back.
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import types
from collections.abc import Sequence

import numpy as np
import torch

from sg2_container.inference.generate import seed_ws
from sg2_container.inference.latents import mix_styles
from sg2_container.io.images import to_uint8
from sg2_container.models.networks.layers import FullyConnectedLayer
from sg2_container.serving.request import NetworkInfo, RenderRequest

log = logging.getLogger(__name__)


def _forward_rows_one_by_one(module: FullyConnectedLayer, x: torch.Tensor) -> torch.Tensor:
    """A fully connected layer's forward one row at a time, so a row's result is the same
    whatever else is in the batch (and equals a one-row forward)."""
    if x.ndim != 2 or x.shape[0] <= 1:
        return FullyConnectedLayer.forward(module, x)
    return torch.cat([FullyConnectedLayer.forward(module, x[i:i + 1]) for i in range(x.shape[0])])


def make_batch_invariant(G) -> None:
    """Every fully connected layer of G (mapping and affines) computes row by row: its forward
    is replaced, not redone after the batched one. (A bound method: a deep copy of G rebinds
    it to the copy's layer.)"""
    for module in G.modules():
        if isinstance(module, FullyConnectedLayer):
            module.forward = types.MethodType(_forward_rows_one_by_one, module)


class RendererClosed(RuntimeError):
    """The renderer closed (the server is stopping) before this render finished."""


class RenderThread(concurrent.futures.Executor):
    """One daemon thread running submitted calls in order: a stop never waits for a forward
    already running (a ThreadPoolExecutor's threads are joined at the interpreter's exit, which
    would hold the process past drain_timeout_s; the caller ends the process instead)."""

    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._running = threading.Event()
        threading.Thread(target=self._work, name=name, daemon=True).start()

    @property
    def busy(self) -> bool:
        """A call is running now."""
        return self._running.is_set()

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("the render thread is shut down")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Queued calls are cancelled; the running one is never waited for (`wait` is ignored:
        a stop must not outlast its bound)."""
        self._closed = True
        while True:
            try:
                future, *_ = self._calls.get_nowait()
            except queue.Empty:
                break
            future.cancel()
        self._calls.put(None)  # wakes the thread, which then ends

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, args, kwargs = call
            self._running.set()  # before the checks: a shutdown after them sees it busy
            if self._closed or not future.set_running_or_notify_cancel():
                future.cancel()
                self._running.clear()
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(error)
            finally:
                self._running.clear()


class Renderer:
    """G on `device`, one worker thread: every forward of this copy runs in that thread."""

    def __init__(self, G, device: torch.device, *, max_batch: int):
        self.G = G
        self.device = device
        self.max_batch = max_batch
        # With max_batch 1 every forward has one row: one shape, nothing to pad.
        self.min_rows = max_batch if device.type == "cuda" else min(2, max_batch)
        self.executor = RenderThread(f"render-{device}")
        self._closing = threading.Event()
        self.info = NetworkInfo(num_ws=G.num_ws, w_dim=G.w_dim, c_dim=G.c_dim)
        make_batch_invariant(G)

    def close(self) -> None:
        """Cancels queued renders and returns at once; a render still running stops at its next
        forward (`busy` says whether one is still running)."""
        self._closing.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def busy(self) -> bool:
        return self.executor.busy

    @torch.no_grad()
    def latents(self, request: RenderRequest) -> torch.Tensor:
        """ws [N, num_ws, w_dim] on the device, drawn as `sg2 generate` draws them."""
        if request.kind == "w":
            return torch.from_numpy(request.w).to(self.device)

        def ws(seeds: Sequence[int]) -> torch.Tensor:
            return seed_ws(self.G, seeds, truncation_psi=request.truncation_psi,
                           class_idx=request.class_idx, device=self.device)

        if request.kind == "seeds":
            return ws(request.seeds)
        mixed = mix_styles(ws(request.row_seeds), ws(request.col_seeds), request.styles)
        return mixed.reshape(-1, *mixed.shape[2:])

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, noise_mode: str) -> np.ndarray:
        """uint8 [N, H, W, C] for ws [N, ...], in forwards of at most max_batch rows."""
        images = []
        for start in range(0, ws.shape[0], self.max_batch):
            if self._closing.is_set():
                raise RendererClosed("the server is stopping")
            chunk = ws[start:start + self.max_batch]
            rows = chunk.shape[0]
            if rows < self.min_rows:
                chunk = torch.cat([chunk, chunk[-1:].expand(self.min_rows - rows, *chunk.shape[1:])])
            # The padding rows still shape the batched blocks; the per-sample ones skip them.
            images.append(to_uint8(self.G.synthesis(chunk, noise_mode=noise_mode, keep=rows)))
        return np.concatenate(images)

    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray | BaseException]:
        """Images per request, or the exception that request alone caused.

        Requests sharing a noise mode share forwards; if a shared forward fails, each request
        is rendered alone so only the one at fault gets the error.
        """
        results: list[np.ndarray | BaseException | None] = [None] * len(requests)
        latents: dict[int, torch.Tensor] = {}
        for i, request in enumerate(requests):
            try:
                latents[i] = self.latents(request)
            except Exception as error:  # this request's fault or not: it alone fails
                results[i] = error
        for mode in dict.fromkeys(r.noise_mode for r in requests):
            group = [i for i in latents if requests[i].noise_mode == mode]
            if not group:
                continue
            try:
                images = self.synthesize(torch.cat([latents[i] for i in group]), mode)
            except RendererClosed:
                raise  # nobody waits for these images any more
            except Exception:
                log.warning("a batch of %d request(s) failed; rendering them one by one",
                            len(group), exc_info=True)
                for i in group:
                    try:
                        results[i] = self.synthesize(latents[i], mode)
                    except Exception as error:
                        results[i] = error
                continue
            start = 0
            for i in group:
                count = latents[i].shape[0]
                results[i] = images[start:start + count]
                start += count
        return results

    def warm_up(self) -> None:
        """One real forward (seed 0), so the first request pays no start-up costs."""
        c_idx = 0 if self.G.c_dim else None
        result = self.render([RenderRequest(kind="seeds", seeds=(0,), class_idx=c_idx)])[0]
        if isinstance(result, BaseException):
            raise result

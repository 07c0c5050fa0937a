"""Dynamic batching: requests arriving within a few milliseconds of each other share one
forward pass. One collector task per model copy pulls from one queue, so a free device takes
the next batch; the forward runs in the copy's thread, never on the event loop."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sg2_container.serving.request import RenderRequest

if TYPE_CHECKING:  # torch loads with the model, after the server listens
    from sg2_container.serving.renderer import Renderer

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full: the client should retry later (503)."""


@dataclasses.dataclass
class _Job:
    request: RenderRequest
    future: asyncio.Future


class Batcher:
    """submit() a request, await its images; start() and stop() run the collector tasks."""

    def __init__(self, renderers: Sequence["Renderer"], *, max_batch: int, batch_wait_ms: float,
                 max_queue: int):
        self.renderers = list(renderers)
        self.max_batch = max_batch
        self.wait_s = batch_wait_ms / 1000
        self.max_queue = max_queue
        self.queued_images = 0
        self.batches = 0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.get_running_loop().create_task(self._collect(r))
                       for r in self.renderers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for renderer in self.renderers:
            renderer.close()

    async def render(self, request: RenderRequest) -> np.ndarray:
        """uint8 [N, H, W, C] for the request; raises Busy, or what rendering it raised."""
        if self.queued_images + request.count > self.max_queue and self.queued_images:
            raise Busy(f"{self.queued_images} images are waiting for the device (max_queue "
                       f"{self.max_queue}); retry shortly")
        job = _Job(request, asyncio.get_running_loop().create_future())
        self.queued_images += request.count
        self._queue.put_nowait(job)
        return await job.future

    async def _next_batch(self) -> list[_Job]:
        """The first waiting job, then whatever arrives within the wait, up to max_batch images."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        count = batch[0].request.count
        deadline = loop.time() + self.wait_s
        while count < self.max_batch:
            try:
                remaining = deadline - loop.time()
                job = (self._queue.get_nowait() if remaining <= 0
                       else await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            batch.append(job)
            count += job.request.count
        return batch

    async def _collect(self, renderer: "Renderer") -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            self.queued_images -= sum(job.request.count for job in batch)
            live = [job for job in batch if not job.future.done()]  # timed-out clients dropped
            if not live:
                continue
            self.batches += 1
            try:
                results = await loop.run_in_executor(
                    renderer.executor, renderer.render, [job.request for job in live])
            except Exception as error:  # render() isolates errors; this is a last resort
                results = [error] * len(live)
            for job, result in zip(live, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

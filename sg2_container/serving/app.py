"""The ASGI app: GET /ping, POST /invocations (SageMaker's hosting routes).

The model loads in the background after the server starts listening, so /ping can say 503
until it is loaded and warmed up, then 200. Every failure of one request becomes a JSON answer
{"error": ..., "field": ...} with a 4xx (the client's to fix) or 5xx status; none stops the
server.

On a stop (SageMaker's SIGTERM, then SIGKILL after its grace period) nothing waits past its
bound: a model still loading is abandoned (no batcher starts, nothing says ready), and requests
still in flight when the drain runs out are answered 503 in the same JSON shape.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sg2_container.errors import UserError
from sg2_container.io.images import png_bytes
from sg2_container.serving.batcher import Batcher, Busy
from sg2_container.serving.options import SAGEMAKER_PAYLOAD_LIMIT, ServeOptions
from sg2_container.serving.request import (
    NPY,
    PNG,
    RequestError,
    accepted_media_types,
    choose_media_type,
    parse_request,
)

log = logging.getLogger(__name__)

# Bodies above this many bytes are parsed in a thread of their own (a 6 MB body takes ~0.4 s
# to decode; on the event loop /ping would wait for it, and SageMaker allows /ping 2 s).
LARGE_BODY = 64 * 1024
# On a stop, how long the shutdown waits for a model load still running (it stops by itself
# before a warm-up and before the next device's copy); then it is abandoned: importing torch or
# one warm-up of a big model on a CPU can outlast SageMaker's grace period.
LOAD_STOP_WAIT_S = 2.0


def npy_bytes(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images, allow_pickle=False)
    return buffer.getvalue()


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


class Endpoint:
    """What the routes and the server share: the batcher once the model is ready, why loading
    failed, and what a stop cut short."""

    def __init__(self, options: ServeOptions):
        self.options = options
        self.batcher: Batcher | None = None
        self.failure: BaseException | None = None
        self.in_flight: set[asyncio.Task] = set()
        self.cut_off = 0  # requests answered 503 because the drain ran out
        self.load_thread: threading.Thread | None = None

    def left_running(self) -> list[str]:
        """What a stop left running in threads (a model load, a forward): the process must end
        without waiting for it (server.end_process)."""
        running = []
        if self.load_thread is not None and self.load_thread.is_alive():
            running.append("the model load")
        if self.batcher is not None:
            running += [f"a forward on {r.device}" for r in self.batcher.renderers if r.busy]
        return running

    def begin_drain(self) -> None:
        """Called on the event loop when the server stops accepting: requests still running
        `drain_timeout_s` from now are cut off (answered 503)."""
        asyncio.get_running_loop().call_later(self.options.drain_timeout_s, self._cut_off)

    def _cut_off(self) -> None:
        for task in list(self.in_flight):
            task.cancel(msg="drain_timeout_s ran out")


def load_renderers(options: ServeOptions, stop: threading.Event):
    """One Renderer (model copy) per device, each warmed up; runs in a thread of its own.
    None when `stop` was set: it is checked between the steps that take time."""
    import torch

    from sg2_container.inference.model_source import load_generator
    from sg2_container.runtime import resolve_device
    from sg2_container.serving.renderer import Renderer

    if options.device.strip() == "auto" and torch.cuda.device_count() > 1:
        devices = [resolve_device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    else:
        devices = [resolve_device(name.strip()) for name in options.device.split(",")]
    renderers = []
    for device in devices:
        if stop.is_set():
            break
        started = time.perf_counter()
        renderers.append(Renderer(load_generator(options.network, device=device).G, device,
                                  max_batch=options.max_batch))
        if stop.is_set():
            break
        renderers[-1].warm_up()
        log.info("model %s ready on %s (loaded and warmed up in %.1f s)", options.network,
                 device, time.perf_counter() - started)
    else:
        return renderers
    for renderer in renderers:
        renderer.close()
    return None


def _in_daemon_thread(function: Callable, *args) -> tuple[asyncio.Future, threading.Thread]:
    """function(*args) in a daemon thread, as a future of the running loop: unlike the loop's
    executor, the loop's shutdown does not wait for it (nor does the process: end_process)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error) -> None:
        if future.done():  # abandoned
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome = (function(*args), None)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: the server stopped without it
            pass

    thread = threading.Thread(target=run, name="load-model", daemon=True)
    thread.start()
    return future, thread


def create_app(options: ServeOptions, *, stop: threading.Event,
               on_fatal: Callable[[BaseException], None]) -> Starlette:
    """The app, its Endpoint in `app.state.endpoint`; `stop` is the signal handler's event.
    `on_fatal(error)` is called when the model cannot be loaded (the server should then exit:
    an endpoint that can never answer must fail its deployment)."""
    state = Endpoint(options)
    parser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def load() -> None:
        try:
            future, state.load_thread = _in_daemon_thread(load_renderers, options, stop)
            renderers = await future
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - reported, then the server exits
            if isinstance(error, UserError):
                log.error("cannot serve: %s", error)
            else:
                log.exception("cannot serve: loading the model failed")
            state.failure = error
            on_fatal(error)
            return
        if renderers is None or stop.is_set():  # stopping: never ready, nothing to batch
            for renderer in renderers or ():
                renderer.close()
            log.info("loading ended early: the server is stopping")
            return
        batcher = Batcher(renderers, max_batch=options.max_batch,
                          batch_wait_ms=options.batch_wait_ms, max_queue=options.max_queue)
        batcher.start()
        state.batcher = batcher
        log.info("ready: /ping answers 200 (max_batch %d, batch_wait_ms %g, max_images %d)",
                 options.max_batch, options.batch_wait_ms, options.max_images)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loading = asyncio.get_running_loop().create_task(load())
        try:
            yield
        finally:
            await asyncio.wait([loading], timeout=LOAD_STOP_WAIT_S)
            if not loading.done():
                log.warning("the model load was still running %g s into the stop: abandoned "
                            "(the process exits without it)", LOAD_STOP_WAIT_S)
                loading.cancel()
            if state.batcher is not None:
                await state.batcher.stop()
            parser.shutdown(wait=False, cancel_futures=True)

    async def ping(request: Request) -> Response:
        if state.batcher is None:
            reason = "failed" if state.failure else "loading"
            return _error(503, f"not ready: the model is {reason}")
        batcher = state.batcher
        return JSONResponse({"status": "ready", "batches": batcher.batches,
                             "queued_images": batcher.queued_images})

    async def invocations(request: Request) -> Response:
        task = asyncio.current_task()
        state.in_flight.add(task)
        try:
            return await answer(request)
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
            task.uncancel()  # the cancel was the drain's: it becomes this request's answer
            state.cut_off += 1
            return _error(503, f"the server is stopping: this request did not finish within "
                               f"drain_timeout_s={options.drain_timeout_s:g} s; retry it")
        finally:
            state.in_flight.discard(task)

    async def answer(request: Request) -> Response:
        started = time.perf_counter()
        try:
            accepted = accepted_media_types(request.headers.get("accept"))  # 406 before reading
            body = await _read_body(request, SAGEMAKER_PAYLOAD_LIMIT)
            if state.batcher is None:
                return _error(503, "not ready: the model is loading; poll /ping")
            info = state.batcher.renderers[0].info
            content_type = request.headers.get("content-type")
            if len(body) > LARGE_BODY:  # parsed off the event loop, one at a time: /ping waits
                render_request = await asyncio.get_running_loop().run_in_executor(  # for none
                    parser, parse_request, body, info, options.max_images, content_type)
            else:
                render_request = parse_request(body, info, options.max_images, content_type)
            media_type = choose_media_type(accepted, render_request.count)
            images = await asyncio.wait_for(state.batcher.render(render_request),
                                            options.request_timeout_s)
            response = await asyncio.get_running_loop().run_in_executor(
                None, _encode, images, render_request, media_type)
        except RequestError as error:
            return JSONResponse(error.body(), status_code=error.status)
        except UserError as error:
            return _error(400, str(error))
        except Busy as error:
            return _error(503, str(error))
        except asyncio.TimeoutError:
            return _error(504, f"the images were not ready within {options.request_timeout_s:g} "
                               "s (request_timeout_s)")
        except Exception as error:  # noqa: BLE001 - one request fails, the server keeps serving
            log.exception("an /invocations request failed")
            return _error(500, f"internal error: {type(error).__name__}: {error}")
        log.debug("%d image(s) in %.1f ms", len(images), (time.perf_counter() - started) * 1e3)
        return response

    app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                            Route("/invocations", invocations, methods=["POST"])],
                    lifespan=lifespan)
    app.state.endpoint = state
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    too_big = RequestError(f"the body is larger than SageMaker's limit of {limit} bytes (6 MiB)",
                           status=413)
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_big
        except ValueError:
            raise RequestError(f"Content-Length {declared!r} is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _encode(images: np.ndarray, request, media_type: str) -> Response:
    """The answer in the chosen type (runs off the event loop: PNG encoding takes time)."""
    height, width, channels = images.shape[1:]
    headers = {"X-Image-Count": str(len(images))}
    if media_type == PNG:
        return Response(png_bytes(images[0]), media_type=PNG, headers=headers)
    if media_type == NPY:
        return Response(npy_bytes(images), media_type=NPY, headers=headers)
    items = [dict(label, png=base64.b64encode(png_bytes(image)).decode("ascii"))
             for label, image in zip(request.labels(), images)]
    return JSONResponse({"images": items, "width": width, "height": height, "channels": channels,
                         "noise_mode": request.noise_mode})

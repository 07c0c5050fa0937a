"""`sg2 prepare`: a folder/zip/tar of arbitrary images -> the training zip (or folder).

Workers decode and resize; the parent only lists names, writes finished PNGs in input order and
counts. At most a few batches per worker are in flight, so memory stays flat however large the
set is, and the output bytes do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from sg2_container.data.convert import Outcome, convert_image, pillow_limits
from sg2_container.data.options import PrepareOptions
from sg2_container.data.progress import Progress
from sg2_container.data.report import Report
from sg2_container.data.sources import Listing, SourceItem, SourceReader, is_image_name, list_source
from sg2_container.data.writer import (
    REPORT_FILE,
    FolderDatasetWriter,
    ZipDatasetWriter,
    check_folder_dest,
    entry_name,
)
from sg2_container.errors import Stopped, UserError
from sg2_container.io.atomic import destination_of
from sg2_container.io.signals import ignore_stop_signals
from sg2_container.options.sizes import MAX_RESOLUTION

log = logging.getLogger(__name__)

# Finished PNG bytes per batch, and batches in flight per worker: together they bound memory.
BATCH_BYTES = 4 << 20
MAX_BATCH = 32
BATCHES_PER_WORKER = 3
_PRESET_DETAILS = {
    "duplicate_name": "a later entry of the archive has the same name",
    "missing_label": "no label for this file (not in dataset.json, or not inside a class folder)",
    "unreadable": "sparse tar member",
    "broken_link": "a symbolic link to nothing, or a loop of links",
    "not_a_file": "a FIFO, socket or device (never opened: reading a FIFO would wait forever)",
    "folder_link": "a link to a folder: not followed, as links can loop (copy the folder in)",
}


def prepare(
    options: PrepareOptions,
    *,
    progress: bool | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Runs the whole preparation and writes the report; raises UserError on unusable input.

    `progress`: True for a redrawn bar, False for log lines, None to decide by whether stderr
    is a terminal. `stop`: checked after every file; when set, raises Stopped and the
    destination is left as it was.
    """
    start = time.monotonic()
    dest = Path(options.dest)
    _check_paths(options)
    _warn_about_leftovers(dest)
    if max(options.output_size) > MAX_RESOLUTION:
        log.warning("writing %dx%d images: training reads images up to %d px, so this dataset "
                    "is for other tools", *options.output_size, MAX_RESOLUTION)
    report_path = _report_path(options)
    if options.report:
        _check_report_path(report_path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix=f".{dest.name}.work-", dir=dest.parent)
    except OSError as e:
        raise UserError(f"--dest: cannot write in {str(dest.parent)!r} ({e.strerror or e}); "
                        "give a path in a writable folder") from e
    workers = options.num_workers
    with scratch as workdir:
        listing = list_source(options.source, options.labels, workdir)
        if listing.kind == "folder":  # our own earlier output may sit inside the source folder
            ours = {os.path.abspath(dest), os.path.abspath(report_path)}
            listing.items = [
                i
                for i in listing.items
                if os.path.abspath(os.path.join(i.path, i.name)) not in ours
            ]
        if not listing.items:
            raise UserError(f"--source: no files found in {options.source!r}")
        report = Report(
            source=options.source,
            dest=options.dest,
            options=dataclasses.asdict(options),
            output_size=options.output_size,
            channels=options.channels,
            num_inputs=len(listing.items),
            label_source=listing.label_source,
            labels_without_image=listing.labels_without_image,
            workers=workers,
        )
        log.info(
            "prepare: %d files in %s (%s), %d worker(s)",
            len(listing.items),
            options.source,
            listing.kind,
            workers,
        )
        writer = ZipDatasetWriter(dest) if options.dest_is_zip else FolderDatasetWriter(dest)
        try:
            kept = _write_images(listing, options, workers, writer, report, progress, stop)
            report.num_unused = report.num_inputs - report.num_processed
            report.elapsed_s = time.monotonic() - start
            if not kept:
                _write_failure_report(report, report_path, options)
                raise UserError(
                    f"no usable images among the {report.num_inputs} files in "
                    f"{options.source!r}: skipped {_reasons(report)}"
                )
            writer.commit(_final_labels(listing, kept, report))
        except BaseException:
            writer.abort()
            raise
    report.elapsed_s = time.monotonic() - start
    report.write(report_path)
    if report.skipped.get("missing_label"):
        log.warning("%d files had no label and were skipped", report.skipped["missing_label"])
    log.debug("prepare: %s", report.summary())
    return report


def _warn_about_leftovers(dest: Path) -> None:
    """Names what an earlier run killed outright (SIGKILL, a lost machine) left beside --dest:
    its hidden temp output and scratch folder. Not removed: another prepare may be writing
    them now."""
    try:
        names = sorted(entry.name for entry in os.scandir(dest.parent)
                       if destination_of(entry.name) == dest.name
                       or entry.name.startswith(f".{dest.name}.work-"))
    except OSError:  # no folder yet, or unreadable: nothing of ours there
        return
    if names:
        log.warning("an interrupted prepare left %d temporary file(s) beside %s: %s; remove "
                    "them unless another prepare is writing to %s now", len(names), dest,
                    ", ".join(names), dest.name)


def _check_paths(options: PrepareOptions) -> None:
    """Fails before anything is created on disk."""
    source, dest = Path(options.source), Path(options.dest)
    if not source.exists():
        raise UserError(
            f"--source: {options.source!r} does not exist; give a folder, a .zip or a .tar"
        )
    if not options.dest_is_zip:
        check_folder_dest(dest)
        if source.is_dir() and dest.resolve().is_relative_to(source.resolve()):
            raise UserError(
                f"--dest: folder {options.dest!r} is inside --source {options.source!r}; its "
                "images would be read back as input on the next run"
            )


def _report_path(options: PrepareOptions) -> Path:
    """--report, else prepare_report.json beside the zip / inside the output folder."""
    if options.report:
        return Path(options.report)
    dest = Path(options.dest)
    return (dest.parent if options.dest_is_zip else dest) / REPORT_FILE


def _check_report_path(path: Path) -> None:
    """--report is written last, after the output is committed: a path that cannot take it
    must fail now, not as a crash after the work."""
    if path.is_dir():
        raise UserError(f"--report {str(path)!r} is a folder; give a file name, such as "
                        f"{str(path / 'prepare_report.json')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.probe-"):
            pass
    except OSError as e:
        raise UserError(f"--report: cannot write in {str(path.parent)!r} ({e.strerror or e}); "
                        "give a path in a writable folder") from None


def _write_failure_report(report: Report, path: Path, options: PrepareOptions) -> None:
    """Keeps the skip list when nothing was usable, without touching an earlier output."""
    if not options.report and not options.dest_is_zip:
        dest = Path(options.dest)
        if dest.exists() and any(dest.iterdir()):
            return
        dest.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.write(path)


def _reasons(report: Report) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common())


def _write_images(
    listing: Listing,
    options: PrepareOptions,
    workers: int,
    writer: ZipDatasetWriter | FolderDatasetWriter,
    report: Report,
    progress: bool | None,
    stop: threading.Event | None,
) -> list[tuple[str, object]]:
    """Writes kept images in input order; returns (entry name, label) per kept image."""
    kept: list[tuple[str, object]] = []
    bar = Progress(len(listing.items), interactive=progress)
    outcomes = _outcomes(listing.items, options, workers)
    try:
        for item, outcome in zip(listing.items, outcomes):
            if stop is not None and stop.is_set():
                raise Stopped(f"stopped after {report.num_processed} of {report.num_inputs} files; "
                              "nothing was written")
            bar.update()
            if outcome.png is None:
                assert outcome.skip is not None
                report.add_skip(item.name, outcome.skip, outcome.detail)
                continue
            name = entry_name(len(kept))
            writer.add(name, outcome.png)
            kept.append((name, item.label))
            report.add_kept(item.name, outcome.converted)
            if options.max_images is not None and len(kept) >= options.max_images:
                break
    finally:
        outcomes.close()  # stops the workers early when --max-images was reached
        bar.close()
    return kept


def _final_labels(
    listing: Listing, kept: list[tuple[str, object]], report: Report
) -> list[list[object]] | None:
    """dataset.json labels: class folders become indices in sorted name order."""
    if listing.label_source == "none":
        return None
    if listing.label_source == "folders":
        report.class_names = sorted({str(label) for _, label in kept})
        index = {name: i for i, name in enumerate(report.class_names)}
        labels: list[list[object]] = [[name, index[str(label)]] for name, label in kept]
    else:
        labels = [
            [name, list(label) if isinstance(label, tuple) else label] for name, label in kept
        ]
    first = labels[0][1]
    if isinstance(first, list):
        report.label_dim = len(first)
    else:
        report.label_dim = max(int(label) for _, label in labels) + 1  # type: ignore[call-overload]
        counts = [0] * report.label_dim
        for _, label in labels:
            counts[label] += 1  # type: ignore[index]
        report.class_counts = counts
    return labels


def _batch_size(options: PrepareOptions, num_items: int, workers: int) -> int:
    """Enough images per task to amortise the hand-over, few enough to keep memory small and
    to give every worker several tasks."""
    width, height = options.output_size
    by_bytes = BATCH_BYTES // (width * height * options.channels)
    by_balance = math.ceil(num_items / (workers * 4))
    return max(1, min(MAX_BATCH, by_bytes, by_balance))


def _outcomes(items: list[SourceItem], options: PrepareOptions, workers: int) -> Iterator[Outcome]:
    """One Outcome per item, in item order, computed by `workers` processes."""
    size = _batch_size(options, len(items), workers)
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    workers = min(workers, len(batches))
    if workers <= 1:
        reader = SourceReader()
        try:
            for batch in batches:
                yield from process_batch(batch, options, reader)
        finally:
            reader.close()
        return
    with ProcessPoolExecutor(
        workers, mp_context=_mp_context(), initializer=_init_worker, initargs=(options,)
    ) as pool:
        pending: deque = deque()
        try:
            for batch in batches:
                pending.append(pool.submit(_run_batch, batch))
                if len(pending) >= workers * BATCHES_PER_WORKER:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as e:
            raise UserError(
                "a worker process died unexpectedly (killed for lack of memory?); try fewer "
                "--workers or a lower --max-pixels"
            ) from e
        finally:
            for future in pending:
                future.cancel()


def _mp_context() -> multiprocessing.context.BaseContext:
    """fork when this process has no other threads (fast, and needs no importable __main__,
    so scripts without a main guard and stdin scripts work); spawn otherwise, because forking
    a threaded process can deadlock on a lock another thread held."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def process_batch(
    batch: list[SourceItem], options: PrepareOptions, reader: SourceReader
) -> list[Outcome]:
    with pillow_limits(options.max_pixels):
        return [process_item(item, options, reader) for item in batch]


def process_item(item: SourceItem, options: PrepareOptions, reader: SourceReader) -> Outcome:
    """Never raises for a bad file: every problem becomes a skip reason."""
    if item.skip:
        return Outcome(png=None, skip=item.skip, detail=_PRESET_DETAILS.get(item.skip, ""))
    if not is_image_name(item.name):
        extension = os.path.splitext(item.name)[1] or "(none)"
        return Outcome(
            png=None,
            skip="not_an_image",
            detail=f"extension {extension} is not an image type read here",
        )
    max_bytes = options.max_pixels * 4 + (16 << 20)  # an uncompressed 32-bit BMP at the limit
    if item.size > max_bytes:
        return Outcome(png=None, skip="file_too_large", detail=f"{item.size} bytes > {max_bytes}")
    try:
        data = reader.read(item)
    except Exception as e:  # noqa: BLE001 - I/O error, bad CRC, unsupported zip method, ...
        return Outcome(png=None, skip="unreadable", detail=f"{type(e).__name__}: {e}"[:300])
    return convert_image(data, options)


# Per-process state of a worker, set once by the pool's initializer.
_worker_state: tuple[PrepareOptions, SourceReader] | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _worker_state
    ignore_stop_signals()  # the parent decides when to stop
    _exit_with_parent()
    _worker_state = (options, SourceReader())


def _exit_with_parent(every_s: float = 0.5) -> None:
    """A worker ignores stop signals and waits on the pool's queue, which outlives a parent
    killed outright (SIGKILL, OOM): without this it would wait forever, holding the caller's
    output pipe open. A daemon thread ends the worker once it has been handed to init."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_batch(batch: list[SourceItem]) -> list[Outcome]:
    assert _worker_state is not None
    options, reader = _worker_state
    return process_batch(batch, options, reader)

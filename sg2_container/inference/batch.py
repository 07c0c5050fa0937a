"""Batch inference: a list of requests (generate, style_mix, project, interpolate) run against
one model, each into its own folder, with a manifest of what became of every request.

The processing job (sagemaker/infer.py) maps its /opt/ml layout to plain paths and calls
`run_requests`; nothing here knows about SageMaker. A request is one JSON object with one key
naming its kind, whose fields are the command's options (decoded by the option schema, so the
names, values and checks are those of `sg2 generate`, `sg2 style-mix`, ...). A bad request is
recorded as failed and the others still run; a stop request ends the run between requests (and
inside projection between steps) with the manifest written.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sg2_container.errors import Stopped, UserError, shortened
from sg2_container.options.schema import closest, decode_hyperparameters, fields

log = logging.getLogger(__name__)

REQUESTS_FILE = "requests.jsonl"
MANIFEST_FILE = "manifest.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_NAME_BYTES = 255  # one part of a path, as Linux file systems allow
KINDS = ("generate", "style_mix", "project", "interpolate")
# Project fields that belong to the job (one distance network for all its projections).
JOB_PROJECT_FIELDS = ("vgg16", "allow_random_vgg16")
REHEARSAL_NOTE = ("rehearsal: no VGG16 weights were supplied, so the distance network is "
                  "randomly initialised; this shows the mechanics and is not a meaningful "
                  "projection")


@dataclasses.dataclass
class Request:
    """One entry of the manifest: where it came from, what it asked, what became of it."""

    index: int
    source: str  # 'requests.jsonl line N' or 'data image NAME'
    kind: str | None
    fields: Any  # the request's fields as given (JSON data)
    options: Any = None  # the decoded options, None when the request is bad
    targets: tuple[str, ...] = ()  # project only: names, resolved when the request runs
    status: str = "pending"  # pending -> done | failed | skipped
    message: str | None = None
    files: list[str] = dataclasses.field(default_factory=list)
    seconds: float | None = None
    note: str | None = None
    crashed: bool = False  # failed on an unexpected error (a bug, the machine), not the input

    @property
    def folder(self) -> str:
        return f"{self.index:03d}-{self.kind or 'bad'}"

    def entry(self) -> dict:
        entry = {"index": self.index, "source": self.source, "kind": self.kind,
                 "request": self.fields, "status": self.status, "folder": self.folder,
                 "files": self.files}
        for key in ("message", "seconds", "note"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        return entry


def _options_class(kind: str) -> type:
    from sg2_container.inference import options

    if kind == "project":
        from sg2_container.inference.project import ProjectOptions

        return ProjectOptions
    return {"generate": options.GenerateOptions, "style_mix": options.StyleMixOptions,
            "interpolate": options.InterpolateOptions}[kind]


def check_name(name: Any, field: str) -> str:
    """A file name a request gives: checked for its form only (relative, without '..'), since
    the file may be one that an earlier request of the job has still to write."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() \
            or ".." in Path(name).parts or any(ord(ch) < 32 or ord(ch) == 127 for ch in name) \
            or any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
                   for part in Path(name).parts):
        raise UserError(f"{field}={shortened(repr(name), 200)} is not allowed: a file name "
                        "relative to the data folder (or to the job's output folder), without "
                        f"'..' or control characters, each part at most {MAX_NAME_BYTES} bytes")
    return name


def resolve_input(name: str, field: str, data: Path | None, outdir: Path,
                  written: set[str]) -> Path:
    """A request's file, looked up just before the request runs: in the data folder, else
    among the files that earlier requests of this job wrote (`written`, relative to outdir),
    so a request may use e.g. a projected_w.npz from an earlier one, and never a file left in
    the output folder by an older run."""
    if data is not None and (data / name).is_file():
        return data / name
    if str(Path(name)) in written and (outdir / name).is_file():
        return outdir / name
    raise UserError(f"{field}={name!r}: no such file in the data folder"
                    f"{'' if data is None else f' ({data})'}, nor among the files earlier "
                    f"requests of this job wrote ({outdir})")


def check_image(path: Path) -> None:
    """A projection target must be an image Pillow can read; say so by name otherwise."""
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:
            image.verify()
    except PIL.Image.DecompressionBombError as error:
        raise UserError(f"target {path.name}: too many pixels to open safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"target {path.name}: not an image ({error})") from None


def parse_request(index: int, source: str, obj: Any, *, data: Path | None, outdir: Path,
                  project_defaults: Mapping[str, Any]) -> Request:
    """A request object -> a Request with decoded options; status 'failed' when it is bad."""
    request = Request(index=index, source=source, kind=None, fields=obj)
    try:
        if not isinstance(obj, dict) or len(obj) != 1:
            raise UserError("a request is a JSON object with one key naming its kind: "
                            + ", ".join(KINDS))
        (kind, values), = obj.items()
        if kind not in KINDS:
            raise UserError(f"unknown request kind {kind!r}{closest(kind, KINDS)}; allowed: "
                            + ", ".join(KINDS))
        request.kind, request.fields = kind, values
        if not isinstance(values, dict):
            raise UserError(f"{kind}: the fields must be a JSON object, e.g. "
                            '{"generate": {"seeds": [1, 2]}}')
        values = dict(values)
        if kind == "project":
            targets = values.pop("targets", values.pop("target", None))
            if targets is None:
                raise UserError("project: name the images to project: \"targets\": [\"face.png\"]")
            names = targets if isinstance(targets, list) else [targets]
            request.targets = tuple(check_name(n, "targets") for n in names)
            for name in JOB_PROJECT_FIELDS:
                if name in values:
                    raise UserError(f"project: {name} is set for the whole job (--"
                                    f"{name.replace('_', '-')}), not per request")
        cls = _options_class(kind)
        known = fields(cls)
        for key in values:
            if key.replace("-", "_") not in known:
                raise UserError(f"{kind}: unknown field {key!r}{closest(key, known)}; allowed: "
                                + ", ".join(n for n in known if n not in JOB_PROJECT_FIELDS))
        decoded = decode_hyperparameters(cls, values)
        if kind == "project":
            decoded = {**project_defaults, **decoded}
        value = decoded.get("projected_w")
        if isinstance(value, str):
            check_name(value, "projected_w")
        elif isinstance(value, tuple):
            for item in value:
                check_name(item, "projected_w")
        missing = [n for n, f in known.items() if f.required and n not in decoded]
        if missing:
            raise UserError(f"{kind}: missing field(s) {', '.join(missing)} "
                            f"({'; '.join(f'{n}: {known[n].spec.help}' for n in missing)})")
        request.options = cls(**decoded)
    except UserError as error:
        request.status, request.message = "failed", str(error)
    except Exception as error:  # a value no check foresaw: this request fails, not the job
        log.exception("%s: unexpected error reading the request", source)
        request.status, request.message = "failed", f"bad request ({_describe(error)})"
        request.crashed = True
    return request


def _describe(error: BaseException) -> str:
    """An unexpected error in one line of bounded length, for the manifest."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:300] + "..."


def _decode_line(raw: bytes, first: bool) -> Any:
    """One line of requests.jsonl -> its JSON value; UserError when it is not UTF-8 or JSON
    (each line on its own, so one bad byte or one absurd nesting fails only its line)."""
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"not UTF-8 text: {error}") from None
    try:
        return json.loads(line)
    except RecursionError:
        raise UserError("not JSON this job reads: nested too deeply") from None
    except ValueError as error:
        raise UserError(f"not JSON: {error}") from None


def read_requests(data: Path | None, outdir: Path, *, project_defaults: Mapping[str, Any],
                  project_data_images: bool) -> list[Request]:
    """The requests of requests.jsonl (one per non-blank line), then one projection per image
    of the data folder that no project request names already."""
    requests: list[Request] = []
    if data is None:
        return requests
    path = data / REQUESTS_FILE
    if path.is_file():
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            if not raw.strip():
                continue
            source = f"{REQUESTS_FILE} line {number}"
            try:
                obj = _decode_line(raw, number == 1)
            except UserError as error:
                shown = raw.decode("utf-8", "replace")
                bad = Request(index=len(requests), source=source, kind=None,
                              fields=shown if len(shown) <= 1000 else shown[:1000] + "...",
                              status="failed", message=str(error))
                requests.append(bad)
                continue
            requests.append(parse_request(len(requests), source, obj, data=data, outdir=outdir,
                                          project_defaults=project_defaults))
    if project_data_images:
        named = {(data / t).resolve() for r in requests for t in r.targets}
        for image in sorted(p for p in data.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            if image.resolve() in named:
                continue
            requests.append(parse_request(len(requests), f"data image {image.name}",
                                          {"project": {"targets": [image.name]}}, data=data,
                                          outdir=outdir, project_defaults=project_defaults))
    return requests


class Manifest:
    """manifest.json in the output folder, rewritten atomically after every request."""

    def __init__(self, outdir: Path, job: dict, requests: list[Request]):
        self.path = outdir / MANIFEST_FILE
        self.job = job
        self.requests = requests

    def write(self, status: str) -> dict:
        from sg2_container.models.files import write_atomically

        counts = {s: sum(r.status == s for r in self.requests)
                  for s in ("done", "failed", "skipped", "pending")}
        document = {"status": status, "job": self.job, "counts": counts,
                    "requests": [r.entry() for r in self.requests]}
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        write_atomically(self.path, lambda f: f.write(data))
        return document


def _relative(path: Path, outdir: Path) -> str:
    """Manifest file names are relative to the output folder (it is uploaded as a whole)."""
    try:
        return str(Path(path).relative_to(outdir))
    except ValueError:
        return str(path)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _run_one(G, request: Request, outdir: Path, device, stop: threading.Event,
             progress: bool, distance_networks: dict, resolve: Callable[[str, str], Path],
             ) -> list[Path]:
    """distance_networks: the job's loaded LPIPS networks by (vgg16, allow_random), filled on
    the first projection, so that a folder of N images reads the VGG16 file once, not N times.
    resolve(name, field): a file the request names -> its path, now that earlier requests ran."""
    folder = outdir / request.folder
    options = request.options
    projected_w = getattr(options, "projected_w", None)
    if isinstance(projected_w, str):
        options = dataclasses.replace(options, projected_w=str(resolve(projected_w, "projected_w")))
    elif projected_w:
        options = dataclasses.replace(options, projected_w=tuple(
            str(resolve(name, "projected_w")) for name in projected_w))
    if request.kind == "generate":
        from sg2_container.inference.generate import generate_to_folder

        return generate_to_folder(G, options, folder, device, stop=stop)
    if request.kind == "style_mix":
        from sg2_container.inference.style_mix import style_mix_to_folder

        return style_mix_to_folder(G, options, folder, device, stop=stop)
    if request.kind == "interpolate":
        from sg2_container.inference.interpolate import interpolate_to_folder

        return interpolate_to_folder(G, options, folder, device, stop=stop)
    targets = [resolve(name, "targets") for name in request.targets]
    for target in targets:
        check_image(target)
    from sg2_container.inference.lpips_vgg import load_distance_network
    from sg2_container.inference.project import project_images

    key = (options.vgg16, options.allow_random_vgg16)
    if key not in distance_networks:
        distance_networks[key] = load_distance_network(
            options.vgg16, allow_random=options.allow_random_vgg16, device=device)
    results = project_images(G, targets, folder, options, device=device, stop=stop,
                             progress=progress, distance_network=distance_networks[key])
    if any(r.get("rehearsal") for r in results):
        request.note = REHEARSAL_NOTE
        log.warning("request %d: %s", request.index, REHEARSAL_NOTE)
    distances = [f"{Path(r['target']).name}: {r['distance']:.4g}" for r in results
                 if "distance" in r]
    if distances:
        log.info("request %d: final distance %s", request.index, ", ".join(distances))
    return [Path(f) for r in results for f in r.get("files", [])]


def _raise_if_crashed(requests: list[Request], outcome: str) -> None:
    """A job whose requests all failed is the user's to fix (exit 1) only when no failure was
    unexpected; otherwise it is a crash (exit 2), as the job runner's table says."""
    crashed = [r for r in requests if r.crashed]
    if crashed:
        raise RuntimeError(f"{outcome}; {len(crashed)} failed on an unexpected error (the "
                           f"traceback is in the log), the first ({crashed[0].source}): "
                           f"{crashed[0].message}")


def run_requests(*, model: Path, data: Path | None, outdir: Path, device: str = "auto",
                 project_defaults: Mapping[str, Any] | None = None,
                 project_data_images: bool = True, stop: threading.Event | None = None,
                 progress: bool = False) -> dict:
    """Runs every request against the model in `model` (file, model.tar.gz or folder); results
    in outdir/<NNN>-<kind>/ and outdir/manifest.json. Returns the manifest.

    Raises UserError when there is no valid request or none succeeded (after writing the
    manifest; RuntimeError when one of those failures was unexpected, a crash), and
    errors.Stopped when `stop` was set before the end.
    """
    from sg2_container.inference.model_source import load_generator
    from sg2_container.runtime import resolve_device

    stop = stop or threading.Event()
    outdir.mkdir(parents=True, exist_ok=True)
    requests = read_requests(data, outdir, project_defaults=dict(project_defaults or {}),
                             project_data_images=project_data_images)
    job = {"model": str(model), "data": None if data is None else str(data),
           "output": str(outdir), "started": _now()}
    manifest = Manifest(outdir, job, requests)
    for request in requests:
        if request.status == "failed":
            log.error("%s: bad request: %s", request.source, request.message)
    valid = [r for r in requests if r.status == "pending"]
    if not valid:
        manifest.write("failed")
        _raise_if_crashed(requests, "no request could be read")
        found = "no requests.jsonl and no images" if not requests else (
            f"{len(requests)} request(s), none valid (the first, {requests[0].source}: "
            f"{shortened(requests[0].message or '', 300)}; every reason is in the log and in "
            f"{manifest.path})")
        raise UserError(f"nothing to do: {found} in the data folder {data}; put images to "
                        f"project and/or a {REQUESTS_FILE} there (see docs/inference.md)")

    try:
        torch_device = resolve_device(device)
        loaded = load_generator(model, device=torch_device)
    except UserError as error:
        for request in valid:
            request.status, request.message = "failed", f"not run: {error}"
        job.update(finished=_now(), error=str(error))
        manifest.write("failed")
        raise
    job.update(model_file=str(loaded.path), device=str(torch_device))
    manifest.write("running")
    log.info("batch inference: %d request(s) (%d bad) -> %s", len(valid),
             len(requests) - len(valid), outdir)
    distance_networks: dict = {}
    written: set[str] = set()  # files of this job's finished requests, relative to outdir

    def resolve(name: str, field: str) -> Path:
        return resolve_input(name, field, data, outdir, written)

    try:
        for position, request in enumerate(valid, 1):
            if stop.is_set():
                break
            log.info("request %d (%d of %d; %s, %s): %s", request.index, position, len(valid),
                     request.kind, request.source, json.dumps(request.fields))
            start = time.perf_counter()
            try:
                files = _run_one(loaded.G, request, outdir, torch_device, stop, progress,
                                 distance_networks, resolve)
            except Stopped as stopped:
                request.status, request.message = "skipped", f"stopped before the end ({stopped})"
                # What it finished before the stop is kept (and uploaded): listed, not hidden.
                folder = outdir / request.folder
                request.files = sorted(_relative(p, outdir) for p in folder.rglob("*")
                                       if p.is_file() and not p.name.startswith("."))
                break
            except UserError as error:
                request.status, request.message = "failed", str(error)
                log.error("request %d (%s) failed: %s", request.index, request.source, error)
            except Exception as error:  # one request's failure, whatever it is, is its own
                request.status, request.message = "failed", f"error: {_describe(error)}"
                request.crashed = True
                log.exception("request %d (%s) failed", request.index, request.source)
            else:
                request.status = "done"
                request.files = sorted(_relative(p, outdir) for p in files)
                written.update(str(Path(name)) for name in request.files)
                log.info("request %d done: %d file(s) in %s", request.index, len(files),
                         outdir / request.folder)
            request.seconds = round(time.perf_counter() - start, 3)
            manifest.write("running")
    except BaseException as error:  # e.g. KeyboardInterrupt: the manifest must not say running
        for request in valid:
            if request.status == "pending":
                request.status, request.message = "skipped", f"not run: {_describe(error)}"
        job.update(finished=_now(), error=_describe(error))
        manifest.write("failed")
        raise
    skipped = [r for r in valid if r.status in ("pending", "skipped")]
    for request in skipped:
        if request.status == "pending":
            request.status, request.message = "skipped", "not started: the job was asked to stop"
    job["finished"] = _now()
    if any(r.note for r in requests):
        job["note"] = REHEARSAL_NOTE
    if skipped:
        manifest.write("stopped")
        raise Stopped(f"{len(skipped)} request(s) skipped; manifest in {manifest.path}")
    done = [r for r in requests if r.status == "done"]
    document = manifest.write("done" if done else "failed")
    if not done:
        _raise_if_crashed(requests, "no request succeeded")
        first = next(r for r in requests if r.status == "failed")
        raise UserError(f"no request succeeded; the first failure ({first.source}): "
                        f"{first.message}")
    log.info("batch inference finished: %d done, %d failed; manifest %s",
             document["counts"]["done"], document["counts"]["failed"], manifest.path)
    return document

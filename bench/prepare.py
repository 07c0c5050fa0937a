"""Benchmark `sg2 prepare` against a plain one-image-at-a-time Pillow loop.

Generates mixed-size JPEGs into a temporary folder, then runs each variant in a fresh
subprocess, `--repeat` times interleaved, and reports images/s (best and median run), CPU time
per image (all processes; unaffected by other load on the machine) and peak memory (the
process's own peak RSS and the largest worker's).
Usage: python bench/prepare.py [--images 1000 5000] [--size 256] [--workers N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as bench/prepare.py
from bench.args import at_least, power_of_two  # noqa: E402

# (width, height) of the generated photos: phone-camera-like down to thumbnails, both
# orientations. Mean about 1.0 megapixel.
SHAPES = [
    (256, 256),
    (320, 240),
    (480, 640),
    (640, 480),
    (800, 600),
    (600, 800),
    (1024, 768),
    (768, 1024),
    (1280, 720),
    (720, 1280),
    (1200, 1200),
    (1600, 1200),
    (1200, 1600),
    (2048, 1536),
    (1536, 2048),
    (300, 500),
    (512, 512),
    (960, 540),
    (1080, 1080),
    (400, 300),
]


def _photo(width: int, height: int, seed: int) -> bytes:
    """A smooth gradient with some texture: compresses like a photo, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            127 + 100 * np.sin(x / (37 + seed) + rng.uniform(0, 6)),
            127 + 100 * np.cos(y / (53 + seed) + rng.uniform(0, 6)),
            127 + 100 * np.sin((x + y) / (71 + seed)),
        ],
        axis=-1,
    )
    base += rng.normal(0, 12, base.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def generate(folder: Path, count: int) -> None:
    """Writes `count` JPEGs cycling over a few distinct encodings (decode cost is what counts)."""
    blobs = [_photo(w, h, i) for i, (w, h) in enumerate(SHAPES)]
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"photo{i:06d}.jpg").write_bytes(blobs[i % len(blobs)])


def baseline(source: Path, dest: Path, size: int) -> int:
    """The plain loop: open, RGB, centre square crop, Lanczos, PNG level 0, stored zip."""
    names = sorted(p for p in source.rglob("*") if p.is_file())
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for index, path in enumerate(names):
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                c = min(w, h)
                box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
                im = im.resize((size, size), Image.Resampling.LANCZOS, box=box)
                buf = io.BytesIO()
                im.save(buf, "PNG", compress_level=0)
            digits = f"{index:08d}"
            zf.writestr(f"{digits[:5]}/img{digits}.png", buf.getvalue())
    return len(names)


def ours(source: Path, dest: Path, size: int, workers: int) -> int:
    from sg2_container.data.options import PrepareOptions
    from sg2_container.data.prepare import prepare

    options = PrepareOptions(
        source=str(source),
        dest=str(dest),
        width=size,
        height=size,
        workers=workers,
        report=str(dest.with_suffix(".json")),
    )
    return prepare(options, progress=False).num_written


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would also count the launcher's peak,
    which Linux carries across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args: argparse.Namespace) -> None:
    """Runs one variant in this (fresh) process and prints its figures as JSON."""
    source, dest = Path(args.source), Path(args.dest)
    start = time.perf_counter()
    if args.variant == "baseline":
        count = baseline(source, dest, args.size)
    else:
        count = ours(source, dest, args.size, args.workers)
    elapsed = time.perf_counter() - start
    own = _peak_rss_mib()
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    kids_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(u.ru_utime + u.ru_stime for u in (self_usage, kids_usage))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "images": count,
                "seconds": elapsed,
                "images_per_s": count / elapsed,
                "cpu_ms_per_image": 1000 * cpu / count,
                "parent_peak_mib": own,
                "largest_worker_peak_mib": kids,
            }
        )
    )


def _run_variant(variant: str, source: Path, dest: Path, size: int, workers: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--source",
        str(source),
        "--dest",
        str(dest),
        "--size",
        str(size),
        "--workers",
        str(workers),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.variant = args.child
        _child(args)
        return
    at_least(parser, args, images=1, workers=1, repeat=1)
    power_of_two(parser, "--size", args.size, high=16384)  # sg2 prepare's --width/--height
    print(
        f"machine: {_cpu_model()}, {len(os.sched_getaffinity(0))} cores; Python "
        f"{platform.python_version()}, Pillow {Image.__version__}; output {args.size}x{args.size}; "
        f"best and median of {args.repeat} interleaved runs"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        "| images | variant | images/s best | median | speed-up (best) | CPU ms/image "
        "| parent peak MiB | largest worker peak MiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    variants = [("baseline", 1), ("ours", 1), ("ours", args.workers)]
    with tempfile.TemporaryDirectory(prefix="sg2-bench-prepare-") as tmp:
        for count in args.images:
            source = Path(tmp) / f"jpegs-{count}"
            start = time.perf_counter()
            generate(source, count)
            print(f"<!-- generated {count} JPEGs in {time.perf_counter() - start:.1f} s -->")
            runs: dict[tuple[str, int], list[dict]] = {v: [] for v in variants}
            for _ in range(args.repeat):
                for variant, workers in variants:
                    dest = Path(tmp) / f"{variant}-{workers}-{count}.zip"
                    runs[(variant, workers)].append(
                        _run_variant(variant, source, dest, args.size, workers)
                    )
                    dest.unlink()
            base = max(r["images_per_s"] for r in runs[("baseline", 1)])
            for variant, workers in variants:
                rs = runs[(variant, workers)]
                rates = sorted(r["images_per_s"] for r in rs)
                label = (
                    "baseline (1 process)"
                    if variant == "baseline"
                    else f"sg2 prepare, {workers} worker(s)"
                )
                worker_peak = (
                    f"{max(r['largest_worker_peak_mib'] for r in rs):.0f}"
                    if variant == "ours" and workers > 1
                    else "-"
                )
                print(
                    f"| {count} | {label} | {rates[-1]:.1f} | {rates[len(rates) // 2]:.1f} | "
                    f"{rates[-1] / base:.2f}x | {min(r['cpu_ms_per_image'] for r in rs):.1f} | "
                    f"{max(r['parent_peak_mib'] for r in rs):.0f} | {worker_peak} |",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

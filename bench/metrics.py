"""Benchmark the metrics' feature extraction (Inception-v3 at 299 px), the FID formula and
the perceptual path length (PPL) samples.

The detector and the LPIPS VGG16 are the real architectures with random weights (speed does not
depend on the weight values), so no download is needed. Prints images/s per device and batch
size, the time of one FID at 2048 dimensions, and PPL samples/s (two images rendered by a
--cfg generator at --resolution and compared per sample).
Usage: python -m bench.metrics [--batch 1 8 32] [--images 32] [--device cpu cuda]
       [--ppl-samples 8] [--cfg paper256]
"""
from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import torch

from bench import args as checks
from bench.timing import machine_description, malloc_as_sg2, preset_generator, synchronize
from sg2_container.metrics import formulas


def random_detector(device: torch.device):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from sg2_container.metrics.detector import Detector

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    module = Unloaded("bench", ["2048", "logits_unbiased"], feature_extractor_weights_path=empty)
    return Detector(module.to(device), path=None, identity="random", device=device,
                    torchscript=False)


def images_per_second(detector, device, batch: int, images: int, resolution: int) -> float:
    x = torch.randint(0, 256, [batch, 3, resolution, resolution], dtype=torch.uint8, device=device)
    detector(x)  # warm-up (cuDNN autotune, allocations)
    synchronize(device)
    start, done = time.perf_counter(), 0
    while done < images:
        detector(x)
        done += batch
    synchronize(device)
    return done / (time.perf_counter() - start)


def ppl_samples_per_second(device, cfg: str, resolution: int, batch: int, samples: int) -> float:
    from sg2_container.metrics.ppl import load_distance, path_lengths
    from sg2_container.options.metric_specs import SPECS

    torch.manual_seed(0)
    G = preset_generator(cfg, resolution, device)
    distance, _ = load_distance(None, device, allow_random=True)
    path = SPECS["ppl2_wend"].path
    path_lengths(G, distance, path, count=max(1, batch // 2), batch=batch, seed=0)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    path_lengths(G, distance, path, count=samples, batch=batch, seed=1)
    synchronize(device)
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--ppl-samples", type=int, default=8, help="PPL samples timed (0: skip)")
    parser.add_argument("--cfg", default="paper256", help="generator preset for the PPL timing")
    args = parser.parse_args()
    checks.at_least(parser, args, batch=1, images=1, ppl_samples=0)
    checks.power_of_two(parser, "--resolution", args.resolution)
    devices = {name: checks.device(parser, name) for name in args.device}
    if args.ppl_samples:
        from sg2_container.options import resolve_preset

        with checks.user_errors():  # an unknown --cfg, before minutes of work
            resolve_preset(args.cfg, args.resolution)
    results = {"extract": [], "malloc": malloc_as_sg2()}
    print(f"# {results['malloc']}", flush=True)
    for name, device in devices.items():
        print(f"# {name}: {machine_description(device)}", flush=True)
        results[f"machine_{name}"] = machine_description(device)
        detector = random_detector(device)
        for batch in args.batch:
            rate = images_per_second(detector, device, batch, max(args.images, batch),
                                     args.resolution)
            results["extract"].append({"device": name, "batch": batch, "images_per_s": round(rate, 2)})
            print(f"{name} batch {batch}: {rate:.2f} images/s", flush=True)
        if args.ppl_samples:
            ppl_batch = max(args.batch)
            rate = ppl_samples_per_second(device, args.cfg, args.resolution,
                                          max(2, ppl_batch), args.ppl_samples)
            results.setdefault("ppl", []).append(
                {"device": name, "batch": max(2, ppl_batch), "cfg": args.cfg,
                 "resolution": args.resolution, "samples_per_s": round(rate, 2)})
            print(f"{name} PPL ({args.cfg} @ {args.resolution}px, {max(2, ppl_batch)} images per "
                  f"pass): {rate:.2f} samples/s", flush=True)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal([4096, 2048]), rng.standard_normal([4096, 2048]) + 0.1
    start = time.perf_counter()
    formulas.fid(a, b)
    results["fid_2048d_s"] = round(time.perf_counter() - start, 2)
    print(f"FID formula (2048-d, 4096 x 4096 features): {results['fid_2048d_s']} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

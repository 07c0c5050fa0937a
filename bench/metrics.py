"""Benchmark the metrics' feature extraction (Inception-v3 at 299 px) and the FID formula.

The detector is the real architecture with random weights (speed does not depend on the weight
values), so no download is needed. Prints images/s per device and batch size, and the time of
one FID at 2048 dimensions.
Usage: python -m bench.metrics [--batch 1 8 32] [--images 32] [--device cpu cuda]
"""
from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import torch

from bench.timing import machine_description, synchronize
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()
    results = {"extract": []}
    for name in args.device:
        device = torch.device(name)
        results[f"machine_{name}"] = machine_description(device)
        detector = random_detector(device)
        for batch in args.batch:
            rate = images_per_second(detector, device, batch, max(args.images, batch),
                                     args.resolution)
            results["extract"].append({"device": name, "batch": batch, "images_per_s": round(rate, 2)})
            print(f"{name} batch {batch}: {rate:.2f} images/s", flush=True)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal([4096, 2048]), rng.standard_normal([4096, 2048]) + 0.1
    start = time.perf_counter()
    formulas.fid(a, b)
    results["fid_2048d_s"] = round(time.perf_counter() - start, 2)
    print(f"FID formula (2048-d, 4096 x 4096 features): {results['fid_2048d_s']} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Renders seeds from a snapshot pickle the way the reference's generate tool does (facts
sheet, section 10). Refuses to import sg2-container: the pickle must stand on its own.

usage: generate.py NETWORK OUTDIR SEEDS(comma list) TRUNC NOISE_MODE [CLASS] [--rebuild]
"""
import importlib.abc
import os
import sys


class _BlockOurPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sg2_container", "stylegan2_ops"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the stand-in)")
        return None


sys.meta_path.insert(0, _BlockOurPackages())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402

import legacy  # noqa: E402


def main(argv):
    args = [a for a in argv if a != "--rebuild"]
    network, outdir, seeds, trunc, noise_mode = args[:5]
    class_idx = int(args[5]) if len(args) > 5 else None
    with open(network, "rb") as f:
        G = legacy.load_network_pkl(f)["G_ema"]
    if "--rebuild" in argv:
        G = legacy.rebuild(G)
    os.makedirs(outdir, exist_ok=True)
    label = torch.zeros([1, G.c_dim])
    if G.c_dim:
        label[:, class_idx] = 1
    for seed in (int(s) for s in seeds.split(",")):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
        with torch.no_grad():
            img = G(z, label, truncation_psi=float(trunc), noise_mode=noise_mode)
        np.save(os.path.join(outdir, f"seed{seed:04d}.npy"), img.numpy())
        img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        PIL.Image.fromarray(img[0].numpy(), "RGB").save(os.path.join(outdir, f"seed{seed:04d}.png"))
    print("module of G_ema:", type(G).__mro__[1].__module__)


if __name__ == "__main__":
    main(sys.argv[1:])

"""One side of bench/speed.py: runs in its own process with PYTHONPATH set to one tree.

Run by path (not as bench.*), so that the tree it measures provides every project module. It
reads one JSON command per line on stdin and answers one JSON line on stdout; tensors to
compare travel through files.
"""
from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

from sg2_container.models.networks import Discriminator, Generator
from sg2_container.options import network_kwargs, resolve_preset


class Worker:
    def __init__(self, inference_mode: bool, device: torch.device):
        self.no_grad = torch.inference_mode if inference_mode else torch.no_grad
        self.device = device
        self.G = self.D = None
        self.gamma = 0.0

    def clock(self) -> tuple[float, float]:
        """(wall, CPU) seconds, after the GPU's queued work has finished."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def inputs(self, seed: int, *shapes) -> list[torch.Tensor]:
        """Normal samples drawn on the CPU (the same on every device), then moved."""
        gen = torch.Generator().manual_seed(seed)
        return [torch.randn(shape, generator=gen).to(self.device) for shape in shapes]

    def ops(self):
        """Whether this tree's ops run on its CUDA kernels here, and why (a baseline without its
        kernels would make any comparison on a GPU unfair: it is reported, not hidden)."""
        from stylegan2_ops import _backend

        status = _backend.kernel_status()
        return {"kernels": bool(status.available), "source": status.source,
                "reason": status.reason}

    def setup(self, kind, weights, load, res, cfg, cbase, cmax, fp32=True):
        """Builds the networks; the first worker saves its weights, the second loads them.
        fp32=False: fp16 top blocks and clamps, as a mixed-precision run saves them."""
        preset = resolve_preset(cfg, res)
        G_kwargs, D_kwargs = network_kwargs(preset, res, fp32=fp32, channel_base=cbase,
                                            channel_max=cmax)
        torch.manual_seed(0)
        self.G = Generator(**G_kwargs)
        self.D = Discriminator(**D_kwargs) if kind == "train" else None
        self.gamma = preset.gamma
        nets = {"G": self.G} if self.D is None else {"G": self.G, "D": self.D}
        if load:
            for name, state in torch.load(weights, weights_only=True).items():
                nets[name].load_state_dict(state)
        else:
            torch.save({name: net.state_dict() for name, net in nets.items()}, weights)
        for net in nets.values():
            net.to(self.device)
        if kind == "generate":
            self.G.eval().requires_grad_(False)
        else:
            self.G.train()
            self.D.train()
        return {}

    def generate(self, batch, seed, out=None):
        (z,) = self.inputs(seed, [batch, self.G.z_dim])
        c = torch.zeros([batch, 0], device=self.device)
        start, cpu_start = self.clock()
        with self.no_grad():
            img = self.G(z, c, noise_mode="const")
        end, cpu_end = self.clock()
        seconds, cpu_seconds = end - start, cpu_end - cpu_start
        if out:
            torch.save(img.float().cpu(), out)
        return {"seconds": seconds, "cpu_seconds": cpu_seconds}

    def train(self, batch, res, seed, out=None):
        start, cpu_start = self.clock()
        r1_grads = self.train_step(batch, res, seed)
        end, cpu_end = self.clock()
        seconds, cpu_seconds = end - start, cpu_end - cpu_start
        if out:
            grads = {f"D.{n}": p.grad.cpu() for n, p in self.D.named_parameters()
                     if p.grad is not None}
            grads.update({f"G.{n}": p.grad.cpu() for n, p in self.G.named_parameters()
                          if p.grad is not None})
            torch.save({"r1_grads": r1_grads.float().cpu(), **grads}, out)
        return {"seconds": seconds, "cpu_seconds": cpu_seconds}

    def train_step(self, batch, res, seed):
        """G forward, D on fakes and reals, R1 and path length with their second backward."""
        G, D = self.G, self.D
        z, reals, pl_noise = self.inputs(seed, [batch, G.z_dim],
                                         [batch, G.img_channels, res, res],
                                         [batch // 2, G.img_channels, res, res])
        pl_noise = pl_noise / res
        c = torch.zeros([batch, 0], device=self.device)
        for net in (G, D):
            net.zero_grad(set_to_none=True)
        fakes = G(z, c, noise_mode="const")
        F.softplus(-D(fakes, c)).mean().backward()
        ws = G.mapping(z[: batch // 2], c[: batch // 2])
        img = G.synthesis(ws, noise_mode="const")
        (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
        pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()
        (pl_lengths - pl_lengths.mean().detach()).square().mean().mul(2.0).backward()
        fake_logits = D(fakes.detach(), c)
        real = reals.requires_grad_(True)
        real_logits = D(real, c)
        (r1_grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = r1_grads.square().sum(dim=[1, 2, 3]).mean() * (self.gamma / 2)
        (F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean() + r1).backward()
        return r1_grads.detach()


def main() -> None:
    """argv: [--inference-mode] [--threads N] [--keep-freed-memory] [--device NAME]."""
    if "--keep-freed-memory" in sys.argv:
        # What sg2's entry points do at start (this tree only; the baseline has no such step).
        from sg2_container.io.allocator import keep_freed_memory

        keep_freed_memory()
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    device = torch.device(sys.argv[sys.argv.index("--device") + 1]
                          if "--device" in sys.argv else "cpu")
    if device.type == "cuda":
        # As the reference's training and sg2 train run by default, on both sides alike.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    worker = Worker(inference_mode="--inference-mode" in sys.argv, device=device)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        command = request.pop("cmd")
        print(json.dumps(getattr(worker, command)(**request)), flush=True)


if __name__ == "__main__":
    main()

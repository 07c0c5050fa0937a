"""StyleGAN2 loss: non-saturating logistic, lazy R1 and path-length regularisation, mixing.

Each call handles one chunk of the batch for one phase and runs backward itself; the loop
owns optimizers, chunking and the running w_avg (this module only reports chunk means of w so
the loop can update w_avg the same way whatever the number of processes).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")  # the order they run in within a step


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossSettings:
    r1_gamma: float
    style_mixing_prob: float = 0.9
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01


@dataclasses.dataclass
class ChunkResult:
    """Per-chunk statistics (tensors of per-sample values) and w means for w_avg."""

    stats: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    w_means: list[torch.Tensor] = dataclasses.field(default_factory=list)
    real_signs: torch.Tensor | None = None


class StyleGAN2Loss:
    def __init__(self, G, D, settings: LossSettings, augment_pipe=None):
        self.G, self.D, self.settings, self.augment_pipe = G, D, settings, augment_pipe
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def run_G(self, z, c, result: ChunkResult):
        """Generates images; records mean w for the w_avg update; mixes styles."""
        ws = self.G.mapping(z, c, skip_w_avg_update=True)
        result.w_means.append(ws[:, 0].detach().mean(dim=0))
        if self.settings.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            mix = torch.rand([], device=ws.device) < self.settings.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            keep = torch.arange(num_ws, device=ws.device)[None, :, None] < cutoff
            ws = torch.where(keep, ws, mixed)
        return self.G.synthesis(ws), ws

    def run_D(self, img, c):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase: str, real_img, real_c, gen_z, gen_c, gain: float) -> ChunkResult:
        """Forward + backward of one phase on one chunk; gradients add to .grad."""
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not one of {PHASES}")
        s = self.settings
        result = ChunkResult()

        if phase == "Gmain":
            gen_img, _ = self.run_G(gen_z, gen_c, result)
            gen_logits = self.run_D(gen_img, gen_c)
            loss = F.softplus(-gen_logits)
            result.stats.update({"Loss/scores/fake": gen_logits, "Loss/signs/fake": gen_logits.sign(),
                                 "Loss/G/loss": loss})
            loss.mean().mul(gain).backward()

        elif phase == "Greg":
            if s.pl_weight == 0:
                return result
            batch = max(gen_z.shape[0] // s.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch], result)
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            # autograd.grad computes only what leads to `inputs`: no weight gradients here
            # (measured: half the backward time of also asking for the weights).
            (pl_grads,) = torch.autograd.grad((gen_img * pl_noise).sum(), gen_ws, create_graph=True)
            pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), s.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            loss = pl_penalty * s.pl_weight
            result.stats.update({"Loss/pl_penalty": pl_penalty, "Loss/G/reg": loss})
            loss.mean().mul(gain).backward()

        elif phase == "Dmain":
            with torch.no_grad():
                gen_img, _ = self.run_G(gen_z, gen_c, result)
            gen_logits = self.run_D(gen_img, gen_c)
            loss_gen = F.softplus(gen_logits)
            result.stats.update({"Loss/scores/fake": gen_logits, "Loss/signs/fake": gen_logits.sign()})
            loss_gen.mean().mul(gain).backward()
            real_logits = self.run_D(real_img.detach(), real_c)
            loss_real = F.softplus(-real_logits)
            result.real_signs = real_logits.detach().sign()
            result.stats.update({"Loss/scores/real": real_logits, "Loss/signs/real": real_logits.sign(),
                                 "Loss/D/loss": loss_gen + loss_real})
            loss_real.mean().mul(gain).backward()

        elif phase == "Dreg":
            if s.r1_gamma == 0:
                return result
            real = real_img.detach().requires_grad_(True)
            real_logits = self.run_D(real, real_c)
            (r1_grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1_penalty = r1_grads.square().sum(dim=[1, 2, 3])
            loss = r1_penalty * (s.r1_gamma / 2)
            # ADA counts every D pass on reals, the R1 pass included.
            result.real_signs = real_logits.detach().sign()
            result.stats.update({"Loss/scores/real": real_logits, "Loss/signs/real": real_logits.sign(),
                                 "Loss/r1_penalty": r1_penalty, "Loss/D/reg": loss})
            loss.mean().mul(gain).backward()

        return result

"""Latents from seeds, and style mixing in W: the building blocks every inference entry
(generate, style-mix, interpolate, the batch job, the endpoint) shares, so the same seed means
the same latent everywhere."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sg2_container.errors import UserError


def z_for_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z [N, z_dim] float64, each row drawn as the reference's tools draw a seed's latent."""
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])


@torch.no_grad()
def ws_for_seeds(G, seeds: Sequence[int], *, truncation_psi: float = 1.0,
                 c: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """ws [N, G.num_ws, G.w_dim] for the seeds (c: [N, c_dim] labels of a conditional G)."""
    z = torch.from_numpy(z_for_seeds(seeds, G.z_dim)).to(device=device, dtype=torch.float32)
    return G.mapping(z, c, truncation_psi=truncation_psi)


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, styles: Sequence[int]) -> torch.Tensor:
    """ws [R, C, L, D]: each row's ws with the column's ws at the layer indices `styles`.

    row_ws [R, L, D], col_ws [C, L, D]; an index outside 0..L-1 is the user's error.
    """
    num_ws = row_ws.shape[1]
    bad = [s for s in styles if not 0 <= int(s) < num_ws]
    if bad:
        raise UserError(f"styles={list(styles)}: layer indices must be in 0..{num_ws - 1} for this "
                        f"network ({num_ws} ws); got {bad}")
    mixed = row_ws[:, None].repeat(1, col_ws.shape[0], 1, 1)
    index = list(dict.fromkeys(int(s) for s in styles))
    mixed[:, :, index] = col_ws[None, :, index]
    return mixed

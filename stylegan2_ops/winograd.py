"""3x3 convolutions on a CPU with 4x fewer multiplications: Winograd's F(4x4, 3x3).

oneDNN's direct 3x3 convs already run near this CPU's peak, so the only way left to make them
faster is fewer multiplications. Each 4x4 output tile takes a 6x6 input tile through a fixed
linear transform (B^T d B), a pointwise product with the transformed filter (G g G^T) summed
over input channels (36 matrix products, the BLAS's: over all tiles at once, or block by block
of one image's tiles in cache from 64 x 64 px, chosen by the image alone), and a fixed
output transform (A^T m A), all in one call of the compiled extension
(stylegan2_ops/csrc_cpu/winograd.cpp, built at install as `stylegan2_ops._cpu`,
stylegan2_ops.cpu_kernels); without that build this path is simply off and oneDNN runs the
conv.

Results equal torch's conv2d to about 1e-5 relative (the transforms' rounding). It runs only
where it is measured to win (paper256 at 8-256 px, 1.1-3.7x per layer, docs/kernels.md): in the
modulated conv at inference (by one image's tiles, so that a sample's bytes never depend on its
batch) and inside gradient computations (stylegan2_ops.conv: training, R1, projection).
`SG2_OPS=reference` turns it off with the other compiled paths.
"""
from __future__ import annotations

import torch

from stylegan2_ops import cpu_kernels
from stylegan2_ops.graph import kernel_may_take

# The filter transform G (6x3) for the interpolation points 0, +-1, +-2 and infinity.
_FILTER_TRANSFORM = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)
# Below these the transforms and the transformed filter (4x the weight) cost more than the
# saved multiplications (measured per layer against oneDNN with 2 threads, AVX-512 and AVX2:
# 64 channels at 256 px 1.3-1.5x, 32 channels at 256-512 px 0.93-1.29x, no clear win;
# 4 tiles (8 px) 0.86-1.9x as the 38 MB transformed filter of 512 channels is in cache or not,
# and in the network batch 1 / 8 within the noise of 16 tiles; 1 tile (4 px) 0.76-0.87x).
MIN_CHANNELS = 64
MIN_TILES = 4
# Where the filter is transformed at every call (10 ms for 512 x 512 channels): training.
MIN_TILES_UNCACHED = 128


def _filter_transform_2d(like: torch.Tensor) -> torch.Tensor:
    """[36, 9]: G (.) G^T on a flattened 3x3 filter (the Kronecker product of G with itself)."""
    g = torch.tensor(_FILTER_TRANSFORM, dtype=like.dtype, device=like.device)
    return torch.kron(g, g)


def transform_filter(weight: torch.Tensor) -> torch.Tensor:
    """[out, in, 3, 3] -> [36, in, out]: G w G^T per channel pair, laid out for the products.

    One [36, 9] x [9, in * out] product: 10 ms for 512 x 512 channels, against 95 ms as 262144
    small 6x3 products.
    """
    out_channels, in_channels = weight.shape[:2]
    taps = weight.reshape(out_channels, in_channels, 9).permute(2, 1, 0).reshape(9, -1)
    return (_filter_transform_2d(weight) @ taps).reshape(36, in_channels, out_channels)


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, tiles_per_chunk: int = -1) -> torch.Tensor:
    """dL/dw [out, in, 3, 3] of conv2d(x, w, padding=1) given dL/dy, summed over the batch.

    The kernel gives dL/du for the transformed filter u (36 products per tile and channel pair,
    where oneDNN's direct weight gradient does 144: 3-5.6x oneDNN's best layout at 16-64 px,
    batch 8, on an AVX2 CPU, docs/kernels.md); transform_filter's adjoint, G^T (.) G, takes it
    back to the 3x3 taps. Equal to torch's to about 1e-5 relative, like the forward conv.
    tiles_per_chunk: how many tiles the kernel transforms before their products (-1: scratch
    of about 32 MB).
    """
    module = cpu_kernels.status().module
    channels_last = torch.channels_last
    transformed_grad = module.conv3x3_weight_grad(x.contiguous(memory_format=channels_last),
                                                  grad_y.contiguous(memory_format=channels_last),
                                                  tiles_per_chunk)
    in_channels, out_channels = transformed_grad.shape[1:]
    taps = _filter_transform_2d(transformed_grad).t() @ transformed_grad.reshape(36, -1)
    return taps.reshape(3, 3, in_channels, out_channels).permute(3, 2, 0, 1)


def suits(x: torch.Tensor, weight: torch.Tensor, padding: int,
          noise: torch.Tensor | None = None, *, per_image: bool = True,
          min_tiles: int = MIN_TILES) -> bool:
    """Whether this conv takes the Winograd path: CPU, float32, nothing recorded by autograd,
    a 3x3 filter with padding 1, a shape where it is measured to win, and noise (if any) of one
    plane per sample or one for all, as the synthesis layers add it.

    per_image: count the tiles of one image, not of the batch, so that whether a sample takes
    this path (and so its exact bytes) never depends on the batch it came in (the endpoint
    batches requests and promises each one the bytes it would get alone). Training, where no
    one compares, counts the whole batch.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_autocast_enabled("cpu"):  # the conv would run in the autocast dtype
        return False
    if x.ndim != 4 or weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3) or padding != 1:
        return False
    if min(weight.shape[0], weight.shape[1]) < MIN_CHANNELS:
        return False
    batch, _, height, width = x.shape
    if (1 if per_image else batch) * ((height + 3) // 4) * ((width + 3) // 4) < min_tiles:
        return False
    if noise is not None and not _is_noise_plane(noise, batch, height, width):
        return False
    return kernel_may_take(x, weight, noise) and cpu_kernels.status().available


def _is_noise_plane(noise: torch.Tensor, batch: int, height: int, width: int) -> bool:
    if noise.ndim == 2:
        return tuple(noise.shape) == (height, width)
    return (noise.ndim == 4 and noise.shape[0] in (1, batch) and noise.shape[1] == 1
            and tuple(noise.shape[2:]) == (height, width))


def conv3x3(x: torch.Tensor, transformed: torch.Tensor, styles: torch.Tensor | None = None,
            dcoefs: torch.Tensor | None = None, noise: torch.Tensor | None = None, *,
            per_image: bool = True) -> torch.Tensor:
    """conv2d(x * styles, w, padding=1) * dcoefs + noise, channels_last out.

    transformed: transform_filter(w); styles [N, in] and dcoefs [N, out] per sample, or None;
    noise [H, W], [1, 1, H, W] or [N, 1, H, W], or None. per_image: every image's matrix
    products its own, so that its bytes never depend on its batch (inference); False lets a
    batch share them (training: each 512-channel filter read once per call, not per image).
    """
    module = cpu_kernels.status().module
    batch, _, height, width = x.shape
    x = x.contiguous(memory_format=torch.channels_last)
    if styles is not None:
        styles = styles.to(torch.float32).contiguous()
    if dcoefs is not None:
        dcoefs = dcoefs.to(torch.float32).reshape(batch, -1).contiguous()
    if noise is not None:
        noise = noise.to(torch.float32).reshape(-1, height, width).contiguous()
    return module.conv3x3(x, transformed.contiguous(), styles, dcoefs, noise,
                          per_image=per_image)

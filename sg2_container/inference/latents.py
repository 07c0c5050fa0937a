"""Latents from seeds, and style mixing in W: the building blocks every inference entry
(generate, style-mix, interpolate, the batch job, the endpoint) shares, so the same seed means
the same latent everywhere."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sg2_container.errors import UserError
from sg2_container.inference.seeds import format_seeds


def z_for_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z [N, z_dim] float64, each row drawn as the reference's tools draw a seed's latent."""
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])


@torch.no_grad()
def ws_for_seeds(G, seeds: Sequence[int], *, truncation_psi: float = 1.0,
                 c: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """ws [N, G.num_ws, G.w_dim] for the seeds (c: [N, c_dim] labels of a conditional G)."""
    z = torch.from_numpy(z_for_seeds(seeds, G.z_dim)).to(device=device, dtype=torch.float32)
    return G.mapping(z, c, truncation_psi=truncation_psi)


def check_style_layers(styles: Sequence[int], num_ws: int) -> None:
    """Every layer index names one of the network's num_ws ws: else the user's error."""
    bad = [s for s in styles if not 0 <= int(s) < num_ws]
    if bad:
        raise UserError(f"styles={format_seeds(styles)}: layer indices must be in 0..{num_ws - 1} "
                        f"for this network ({num_ws} ws); out of range: {format_seeds(bad)}")


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, styles: Sequence[int]) -> torch.Tensor:
    """ws [R, C, L, D]: each row's ws with the column's ws at the layer indices `styles`.

    row_ws [R, L, D], col_ws [C, L, D]; an index outside 0..L-1 is the user's error.
    """
    check_style_layers(styles, row_ws.shape[1])
    mixed = row_ws[:, None].repeat(1, col_ws.shape[0], 1, 1)
    index = list(dict.fromkeys(int(s) for s in styles))
    mixed[:, :, index] = col_ws[None, :, index]
    return mixed


# W vectors one file may hold: as many as generate renders by default (a header claiming 10^12
# rows is refused before anything is read).
MAX_W_VECTORS = 100_000


def load_ws_file(path, num_ws: int, w_dim: int, max_count: int = MAX_W_VECTORS) -> np.ndarray:
    """W vectors [n, num_ws, w_dim] float32 from an .npz with key 'w' (a projection's
    projected_w.npz, `generate --save-w`) or an .npy of the same array; read without pickle,
    its shape checked against the network (and `max_count`) before its data is read."""
    import zipfile
    from pathlib import Path

    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if "w.npy" not in names:
                    found = ", ".join(n.removesuffix(".npy") for n in names[:10]) or "none"
                    raise UserError(f"{path.name}: no array 'w' in it (it has {found}); "
                                    "expected a projected_w.npz")
                with archive.open("w.npy") as member:
                    _check_ws_header(member, path, num_ws, w_dim, max_count)
                with archive.open("w.npy") as member:
                    ws = np.lib.format.read_array(member, allow_pickle=False)
        else:
            with open(path, "rb") as file:
                _check_ws_header(file, path, num_ws, w_dim, max_count)
                file.seek(0)
                ws = np.lib.format.read_array(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz of W vectors ({error})") from None
    if ws.ndim == 2:
        ws = ws[None]
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
        ws = ws.astype(np.float32)
    if not np.isfinite(ws).all():
        raise UserError(f"{path.name}: 'w' must hold finite numbers (within float32's range)")
    return ws


def _check_ws_header(file, path, num_ws: int, w_dim: int, max_count: int) -> None:
    """The .npy header's shape and dtype, refused before the data is read."""
    version = np.lib.format.read_magic(file)
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise UserError(f"{path.name}: .npy format version {version[0]}.{version[1]} is not "
                        "read here (1.0 and 2.0 are, as numpy writes them)")
    shape, _, dtype = readers[version](file)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1:] != (num_ws, w_dim) or shape[0] == 0:
        raise UserError(f"{path.name}: 'w' has shape {list(shape)}; this network needs "
                        f"[n, {num_ws}, {w_dim}] (was it made with another model?)")
    if shape[0] > max_count:
        raise UserError(f"{path.name}: 'w' holds {shape[0]} W vectors; at most {max_count} are "
                        "read from one file")
    if dtype.kind != "f":
        raise UserError(f"{path.name}: 'w' must hold floating-point numbers, not {dtype}")


def save_ws_file(path, ws: torch.Tensor | np.ndarray, **extra) -> None:
    """Writes W vectors [n, num_ws, w_dim] as an .npz with key 'w' (the projection's format)."""
    from pathlib import Path

    from sg2_container.models.files import write_atomically

    array = ws.detach().cpu().numpy() if isinstance(ws, torch.Tensor) else np.asarray(ws)
    write_atomically(Path(path), lambda f: np.savez(f, w=array.astype(np.float32), **extra))

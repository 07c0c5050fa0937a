"""`sg2 generate` / GenerateOptions: seed lists and truncation."""
import io
import zipfile

import numpy as np
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.inference.latents import load_ws_file
from sg2_container.inference.options import GenerateOptions
from sg2_container.inference.seeds import parse_seeds
from tests.hostile_inputs.table import Row, user_error


def _cli(tmp_path, *args):
    """`sg2 generate` with a network file that is never reached: options fail first."""
    network = tmp_path / "model.pt"
    network.write_bytes(b"unused")
    result = CliRunner().invoke(cli, ["generate", "--network", str(network), "--outdir",
                                      str(tmp_path / "out"), "--device", "cpu", *args])
    assert result.exit_code != 0 and not (tmp_path / "out").exists()
    return result.output


def _w_file(tmp_path, header_shape=None, values=None):
    """A projected_w.npz: real values, or only a header claiming `header_shape` (1 KB)."""
    path = tmp_path / "w.npz"
    member = io.BytesIO()
    if header_shape is not None:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                      "shape": header_shape})
        member.write(b"\0" * 64)
    else:
        np.save(member, values)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", member.getvalue())
    return path


ROWS = [
    Row("seeds-100M", "`sg2 generate --seeds 0-99999999`",
        "ask for 100000000 images or more; at most 100000 are allowed here (raise max_seeds, "
        "--max-seeds, if you mean it)", lambda tmp: _cli(tmp, "--seeds", "0-99999999")),
    Row("seeds-over-own-cap", "`--seeds 0-10 --max-seeds 5`",
        "at most 5 are allowed here", lambda tmp: _cli(tmp, "--seeds", "0-10", "--max-seeds", "5")),
    Row("seeds-list-over-cap", "`parse_seeds` of 4 listed seeds with `max_seeds=3`",
        "ask for 4 images or more", lambda tmp: user_error(parse_seeds, "1,2,3,4", max_seeds=3)),
    Row("trunc-nan", "`sg2 generate --trunc nan`",
        "--trunc=nan is not allowed: a number (finite)",
        lambda tmp: _cli(tmp, "--trunc", "nan")),
    Row("trunc-inf", "`GenerateOptions(truncation_psi=inf)`",
        "truncation_psi=inf is not allowed: a number (finite)",
        lambda tmp: user_error(GenerateOptions, seeds=(0,), truncation_psi=float("inf"))),
    Row("seeds-5000-characters", "`--seeds` of 5000 characters (`1x1x...`)",
        "bad seed '1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1x1... (5002 "
        "characters)",
        lambda tmp: _cli(tmp, "--seeds", "1x" * 2500)),
    Row("grid-1025", "`sg2 generate --seeds 0-1024 --grid`",
        "generate --grid: 1025 seeds, but grid.png holds at most 1024 images",
        lambda tmp: _cli(tmp, "--seeds", "0-1024", "--grid")),
    Row("w-file-10^12-rows", "1 KB `--projected-w` .npz whose header claims [10^12, 6, 16]",
        "'w' holds 1000000000000 W vectors; at most 100000 are read from one file",
        lambda tmp: user_error(load_ws_file, _w_file(tmp, header_shape=(10**12, 6, 16)), 6, 16)),
    Row("w-beyond-float32", "`--projected-w` .npz holding 1e39 (finite in float64)",
        "'w' must hold finite numbers (within float32's range)",
        lambda tmp: user_error(load_ws_file, _w_file(tmp, values=np.full((1, 6, 16), 1e39)),
                               6, 16)),
    Row("network-url", "`sg2 generate --network https://.../ffhq.pkl` (the reference fetches it)",
        "'https://example.com/ffhq.pkl': a URL, and nothing is downloaded at run time",
        lambda tmp: CliRunner().invoke(cli, ["generate", "--network", "https://example.com/"
                                             "ffhq.pkl", "--seeds", "0", "--outdir",
                                             str(tmp / "out")]).output),
]

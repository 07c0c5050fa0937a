"""`sg2 generate` / GenerateOptions: seed lists and truncation."""
from click.testing import CliRunner

from sg2_container.cli.main import cli
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


ROWS = [
    Row("seeds-100M", "`sg2 generate --seeds 0-99999999`",
        "ask for 100000000 images or more; the cap is max_seeds=100000 (raise it with "
        "--max-seeds", lambda tmp: _cli(tmp, "--seeds", "0-99999999")),
    Row("seeds-over-own-cap", "`--seeds 0-10 --max-seeds 5`",
        "the cap is max_seeds=5", lambda tmp: _cli(tmp, "--seeds", "0-10", "--max-seeds", "5")),
    Row("seeds-list-over-cap", "`parse_seeds` of 4 listed seeds with `max_seeds=3`",
        "ask for 4 images or more", lambda tmp: user_error(parse_seeds, "1,2,3,4", max_seeds=3)),
    Row("trunc-nan", "`sg2 generate --trunc nan`",
        "truncation_psi=nan is not allowed: a number (finite)",
        lambda tmp: _cli(tmp, "--trunc", "nan")),
    Row("trunc-inf", "`GenerateOptions(truncation_psi=inf)`",
        "truncation_psi=inf is not allowed: a number (finite)",
        lambda tmp: user_error(GenerateOptions, seeds=(0,), truncation_psi=float("inf"))),
]

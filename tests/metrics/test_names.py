"""Metric names as users type them: any case accepted, suggestions without regard to case,
and `sg2 metrics --metrics none` told what 'none' means."""
import pytest
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.errors import UserError
from sg2_container.metrics.evaluate import check_names
from sg2_container.metrics.options import MetricsOptions
from sg2_container.options import TrainingOptions
from sg2_container.options.schema import closest


def test_names_in_any_case_are_the_documented_lower_case_ones():
    """FID50K_Full was refused, with no suggestion, by training and `sg2 metrics` alike."""
    assert MetricsOptions(network="n", data="d", metrics=("FID50K_Full", "Kid50k_full")
                          ).metrics == ("fid50k_full", "kid50k_full")
    assert TrainingOptions(data="d", outdir="o", metrics=("NONE", "PPL2_WEND")
                           ).metrics == ("ppl2_wend",)
    assert [s.name for s in check_names(["IS50K"])] == ["is50k"]


@pytest.mark.parametrize("typed,meant", [("FID50K_FUL", "fid50k_full"), ("PR50K", "pr50k3")])
def test_suggestions_ignore_case(typed, meant):
    with pytest.raises(UserError, match=f"did you mean '{meant}'"):
        MetricsOptions(network="n", data="d", metrics=(typed,))
    with pytest.raises(UserError, match=f"did you mean '{meant}'"):
        TrainingOptions(data="d", outdir="o", metrics=(typed,))
    with pytest.raises(UserError, match=f"unknown metric '{typed.lower()}' "
                                        f"\\(did you mean '{meant}'\\?\\); valid names: "):
        check_names([typed])
    # The one suggestion rule, for every option with choices: spelled as allowed.
    assert closest("FAST", ["fast", "slow"]) == " (did you mean 'fast'?)"


def test_sg2_metrics_none_says_what_none_means_and_lists_the_names(tmp_path):
    """It printed "metrics='' is not allowed": the empty name of a list with 'none' dropped."""
    for value in ("none", "NONE", ""):
        result = CliRunner().invoke(cli, ["metrics", "--network", str(tmp_path / "n.pt"),
                                          "--data", str(tmp_path), "--metrics", value])
        assert result.exit_code != 0
        text = " ".join(result.output.split())
        assert "''" not in text, text
        assert "'none'" in text and "turns training's metrics off" in text, text
        assert "one or more of fid50k_full, kid50k_full" in text, text
    with pytest.raises(UserError, match="no metric names given"):
        MetricsOptions(network="n", data="d", metrics=())

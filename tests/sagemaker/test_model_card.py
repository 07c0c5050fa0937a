"""The model card (model/README.md) states the settings the run actually used."""
import json

from tests.sagemaker.conftest import ARTICLE, SMALL


def _card_lines(opt_ml, **changes):
    values = {**ARTICLE, **SMALL}
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    opt_ml.hyperparameters(values)
    code, out = opt_ml.run("train")
    assert code == 0, out
    card = (opt_ml.base / "model" / "README.md").read_text()
    resolved = json.loads((opt_ml.base / "model" / "training_options.json").read_text())["resolved"]
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
            for line in card.splitlines() if line.startswith("- ")}, resolved


def test_noaug_and_the_preset_gamma_are_stated_as_they_were(opt_ml):
    lines, resolved = _card_lines(opt_ml, aug="noaug", augpipe=None, gamma=None)
    assert lines["- augmentation"] == "none (aug=noaug)"
    assert "bgc" not in lines["- augmentation"] and "augpipe" not in lines["- augmentation"]
    assert resolved["gamma"] == 1  # paper256's gamma in the reference's preset table
    assert lines["- R1 gamma"] == "1"


def test_ada_names_its_pipeline_and_the_given_gamma(opt_ml):
    lines, _ = _card_lines(opt_ml)  # the article: augpipe bg, gamma 10
    assert lines["- augmentation"] == "ada, augpipe bg"
    assert lines["- R1 gamma"] == "10"
    card = (opt_ml.base / "model" / "README.md").read_text()
    assert "Generate: `sg2 generate --network model.pt --seeds 0-7 --outdir out/`\n" in card


def test_a_conditional_model_s_generate_command_names_a_class(opt_ml):
    """The card's command failed on a conditional model ('pass --class 0..2')."""
    lines, _ = _card_lines(opt_ml, cond=1)
    assert lines["- resolution"] == "16x16, 3 channel(s), conditional on 3 classes"
    card = (opt_ml.base / "model" / "README.md").read_text()
    assert ("Generate: `sg2 generate --network model.pt --seeds 0-7 --class 0 --outdir out/` "
            "(`--class` 0 to 2)") in card
    assert "`samples.png` (seeds 0-15, class 0, const noise)" in card


def test_a_rerun_with_a_lower_kimg_says_what_the_exported_model_holds(opt_ml):
    """The rerun trains nothing and exports the longer run's model: its training_options.json
    said kimg 0.008 beside a card saying 0.016."""
    lines, _ = _card_lines(opt_ml, kimg=0.016)
    assert lines["- trained for"].startswith("0.016 kimg")
    lines, _ = _card_lines(opt_ml, kimg=0.008)
    assert lines["- trained for"].startswith("0.016 kimg")
    document = json.loads((opt_ml.base / "model" / "training_options.json").read_text())
    assert document["options"]["kimg"] == 0.008  # this run's options, as given
    assert document["trained_kimg"] == 0.016  # and what model.pt holds

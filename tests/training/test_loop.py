"""The training loop as a user relies on it: exact resume, prompt stop, safe checkpoints."""
import json
import logging

import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.models.files import load_model
from sg2_container.training import checkpoint as ckpt
from sg2_container.training.loop import train
from tests.training.conftest import StopAfter


def _final_state(run_dir):
    path = ckpt.list_checkpoints(run_dir)[-1]
    return ckpt.load_checkpoint(path)


def _assert_same_training_state(a, b):
    for part in ("G", "D", "G_ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"
    for opt in ("opt_G", "opt_D"):
        for key, sa in a[opt]["state"].items():
            sb = b[opt]["state"][key]
            for field in sa:
                assert torch.equal(torch.as_tensor(sa[field]), torch.as_tensor(sb[field])), f"{opt} {key} {field}"
    assert a["augment"] == b["augment"]
    assert a.counters == b.counters
    assert [r.pl_mean for r in a.ranks] == [r.pl_mean for r in b.ranks]
    assert [r.ada for r in a.ranks] == [r.ada for r in b.ranks]


def test_stopped_and_resumed_run_equals_uninterrupted_run(tiny_options, tmp_path):
    straight = tiny_options(outdir=str(tmp_path / "straight"))
    result = train(straight)
    assert result.finished and result.cur_nimg == 24

    interrupted = tiny_options(outdir=str(tmp_path / "interrupted"))
    first = train(interrupted, stop_event=StopAfter(3))  # stops mid-tick after step 3
    assert first.stopped and not first.finished and first.cur_nimg == 12
    second = train(interrupted)  # the same command again
    assert second.finished and second.cur_nimg == 24

    _assert_same_training_state(_final_state(tmp_path / "straight"), _final_state(tmp_path / "interrupted"))
    a = load_model(tmp_path / "straight" / "network-final.pt")
    b = load_model(tmp_path / "interrupted" / "network-final.pt")
    for (name, x), (_, y) in zip(a.G_ema.state_dict().items(), b.G_ema.state_dict().items()):
        assert torch.equal(x, y), name


def test_stop_writes_a_checkpoint_within_one_step(tiny_options, tmp_path):
    result = train(tiny_options(), stop_event=StopAfter(1))
    assert result.stopped and result.cur_nimg == 4  # exactly one optimisation step
    assert result.last_checkpoint is not None and result.last_checkpoint.exists()
    state = ckpt.load_checkpoint(result.last_checkpoint)
    assert state["loop"]["cur_nimg"] == 4 and state["loop"]["batch_idx"] == 1


def test_truncated_newest_checkpoint_is_moved_aside_and_the_run_continues(tiny_options, tmp_path, caplog):
    options = tiny_options()
    train(options, stop_event=StopAfter(2))  # tick 0 checkpoint (4) + stop checkpoint (8)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["checkpoint-000000000004.pt", "checkpoint-000000000008.pt"]
    newest = tmp_path / "run" / names[-1]
    torn = newest.read_bytes()[: newest.stat().st_size // 2]
    newest.write_bytes(torn)
    with caplog.at_level(logging.WARNING):
        result = train(options)  # continues from the older good one
    assert result.finished and result.cur_nimg == 24
    assert (tmp_path / "run" / "corrupt" / names[-1]).read_bytes() == torn  # kept, not deleted
    assert any("moved unreadable checkpoint checkpoint-000000000008.pt" in r.message
               for r in caplog.records)
    assert any("1 unreadable checkpoint(s) moved to corrupt/; continuing from "
               "checkpoint-000000000004.pt" in r.message for r in caplog.records)


def test_only_the_newest_checkpoints_are_kept(tiny_options, tmp_path):
    train(tiny_options(snap=1, keep=2))
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["checkpoint-000000000020.pt", "checkpoint-000000000024.pt"]


def test_kimg_below_checkpoint_progress_is_a_message_not_a_loss(tiny_options, tmp_path, caplog):
    train(tiny_options())
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with caplog.at_level(logging.INFO):
        result = train(tiny_options(kimg=0.008))
    assert result.finished and result.cur_nimg == 24
    assert any("nothing to train" in r.message for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_other_network_settings_on_the_same_outdir_are_refused(tiny_options):
    train(tiny_options(), stop_event=StopAfter(1))
    with pytest.raises(ckpt.ChangedOptions, match="cmax: 16 -> 8"):
        train(tiny_options(cmax=8))
    # Accepting changed options cannot make other shapes load: a clear refusal, not a crash.
    with pytest.raises(ckpt.ChangedOptions, match="networks' shapes.*new outdir"):
        train(tiny_options(cmax=8, allow_changed_options=True))


def test_run_folder_has_the_reports(tiny_options, tmp_path):
    train(tiny_options())
    run = tmp_path / "run"
    for name in ("reals.png", "fakes_init.png", "fakes000000.png", "network-snapshot-000000.pt",
                 "network-final.pt", "training_options.json", "stats.jsonl"):
        assert (run / name).exists(), name
    lines = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [line["Progress/tick"]["mean"] for line in lines] == [0, 1, 2, 3]
    assert "Loss/G/loss" in lines[0] and "Loss/r1_penalty" in lines[0]
    resolved = json.loads((run / "training_options.json").read_text())["resolved"]
    assert resolved["batch_size"] == 4 and resolved["G_kwargs"]["img_resolution"] == 16
    final = load_model(run / "network-final.pt")
    assert final.D is not None and final.metadata["kimg"] == 0.024
    # What the reference's snapshots record of their data (mirror on, 32 images, no labels).
    assert final.metadata["training_set_kwargs"] == {
        "class_name": "training.dataset.ImageFolderDataset", "path": tiny_options().data,
        "use_labels": False, "max_size": 32, "xflip": True, "resolution": 16}


def test_a_subset_is_recorded_with_its_seed_as_the_reference_records_it(tiny_options, tmp_path):
    from sg2_container.models.reference_pickle import save_reference_pickle

    train(tiny_options(subset=20, mirror=False, kimg=0.004))
    final = load_model(tmp_path / "run" / "network-final.pt")
    kwargs = final.metadata["training_set_kwargs"]
    assert (kwargs["max_size"], kwargs["xflip"], kwargs["random_seed"]) == (20, False, 7)
    exported = save_reference_pickle(tmp_path / "final.pkl", G_ema=final.G_ema, G=final.G,
                                     D=final.D, metadata=final.metadata)
    assert load_model(exported).metadata["training_set_kwargs"] == kwargs


def test_status_line_is_machine_readable(tiny_options, caplog):
    import re

    with caplog.at_level(logging.INFO, logger="sg2_container.training"):
        train(tiny_options())
    lines = [r.message for r in caplog.records if r.message.startswith("tick=")]
    assert len(lines) == 4
    for line in lines:
        fields = dict(part.split("=", 1) for part in line.split())
        assert re.fullmatch(r"[0-9.]+", fields["kimg"]) and float(fields["sec_per_kimg"]) > 0
        assert "loss_G" in fields and "augment" in fields


def test_resume_from_published_name_without_file_says_what_to_do(tiny_options):
    with pytest.raises(UserError, match="does not download.*ffhq-res256-mirror-paper256-noaug.pkl"
                       ) as raised:
        train(tiny_options(resume="ffhq256"))
    # Named as the option, which a job's hyperparameters and the command line both recognise.
    assert str(raised.value).startswith("resume='ffhq256' names") and "--resume" not in str(
        raised.value)


@pytest.mark.parametrize("form", ["file", "model.tar.gz", "folder"])
def test_resume_from_another_runs_model_copies_its_weights(tiny_options, tmp_path, form):
    """A training job's model.tar.gz (the S3 object a channel hands over as is) was refused
    as 'not a model file'; it is read as inference reads it."""
    import tarfile

    train(tiny_options(outdir=str(tmp_path / "a")))
    final = tmp_path / "a" / "network-final.pt"
    source = load_model(final)
    if form == "model.tar.gz":
        resume = tmp_path / "channel" / "model.tar.gz"
        resume.parent.mkdir()
        with tarfile.open(resume, "w:gz") as archive:
            archive.add(final, arcname="model.pt")
    elif form == "folder":
        resume = tmp_path / "channel"
        resume.mkdir()
        (resume / "model.pt").write_bytes(final.read_bytes())
    else:
        resume = final
    # Another seed: without the resume, run b would start from other weights.
    result = train(tiny_options(outdir=str(tmp_path / "b"), seed=8, resume=str(resume)),
                   stop_event=StopAfter(1))
    state = ckpt.load_checkpoint(result.last_checkpoint)
    assert state["loop"]["cur_nimg"] == 4  # progress starts again; only the weights come along
    # G_ema after one step with ramp-up off (beta ~ 1) still equals the source's G_ema weights.
    for name, value in source.G_ema.named_parameters():
        torch.testing.assert_close(state["G_ema"][name], value, rtol=1e-3, atol=1e-3)
    fresh = train(tiny_options(outdir=str(tmp_path / "c"), seed=8), stop_event=StopAfter(1))
    fresh_state = ckpt.load_checkpoint(fresh.last_checkpoint)
    name = "synthesis.b16.torgb.weight"
    assert (fresh_state["G_ema"][name] - source.G_ema.state_dict()[name]).abs().max() > 0.1


def test_resume_from_another_network_says_what_it_left_out(tiny_options, tmp_path, caplog):
    """Tensors on one side only are skipped as the reference does; that happened silently, so
    a deeper mapping (or another resolution) looked like a complete resume."""
    train(tiny_options(outdir=str(tmp_path / "a"), map=3, kimg=0.004))
    with caplog.at_level(logging.WARNING, logger="sg2_container.training.resume"):
        train(tiny_options(outdir=str(tmp_path / "b"),
                           resume=str(tmp_path / "a" / "network-final.pt")),
              stop_event=StopAfter(1))
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert ("resume: the file's G (16 px) is another network than this run's (16 px): 2 of its "
            "tensors are left out (mapping.fc2.weight, mapping.fc2.bias); 0 of this run's start "
            "from scratch (none)") in warnings
    assert not any("file's D" in message for message in warnings)  # D has no mapping here


def test_image_filter_on_tiny_images_fails_before_training(tiny_options, tmp_path):
    with pytest.raises(UserError, match="augpipe='bgcf' includes the image filter.*16x16"):
        train(tiny_options(augpipe="bgcf"))
    assert not ckpt.list_checkpoints(tmp_path / "run")


@pytest.mark.parametrize("overrides", [
    dict(cfg="cifar", cond=True),
    dict(cfg="stylegan2", fp32=True, freezed=2, nhwc=True, aug="ada", p=None, target=0.0),
])
def test_other_configurations_train(tiny_options, overrides):
    result = train(tiny_options(kimg=0.008, **overrides))
    assert result.finished
    bundle = load_model(result.final_model)
    assert bundle.G_ema.c_dim == (3 if overrides.get("cond") else 0)


def test_data_workers_are_capped_at_the_usable_cores(tiny_options, monkeypatch, caplog):
    """workers=3 (the reference's default) on a 2-core machine made torch warn, twice."""
    import warnings

    from sg2_container.training import loop

    monkeypatch.setattr(loop, "usable_cores", lambda: 1)
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*worker processes in total.*")
        result = loop.train(tiny_options(workers=3, kimg=0.004))
    assert result.finished
    assert "data workers: 1 (workers=3, but this process may use 1 core(s))" in caplog.text

"""Resume that cannot destroy progress: versions, damaged files, changed options, divergence."""
import dataclasses
import logging
import math
import shutil
import zipfile

import pytest
import torch

from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions
from sg2_container.training import checkpoint as ckpt
from sg2_container.data.dataset import content_fingerprint
from sg2_container.training.loop import train
from tests.training.conftest import StopAfter, folder_bytes
from tests.training.test_loop import _assert_same_training_state


def as_version_1(payload: dict) -> dict:
    """The layout format_version 1 wrote (per-process state in four parallel lists)."""
    ranks = payload["ranks"]
    old = {k: v for k, v in payload.items() if k not in ("ranks", "run", "created_by")}
    old["format_version"] = 1
    old["loop"] = {**payload["loop"], "pl_mean": [r["pl_mean"] for r in ranks],
                   "tick_stats": [r["tick_stats"] for r in ranks]}
    old["augment"] = {"p": payload["augment"]["p"], "ada": [r["ada"] for r in ranks]}
    old["rng"] = [r["rng"] for r in ranks]
    return old


def flip_a_bit_in_the_largest_tensor(path):
    """What a bad disk or a bad copy does: one bit inside a stored tensor (zip CRC now wrong)."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26:header + 28], "little")
    extra_len = int.from_bytes(data[header + 28:header + 30], "little")
    data[header + 30 + name_len + extra_len + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_newer_checkpoint_stops_the_job_and_stays_byte_identical(tiny_options, tmp_path):
    train(tiny_options(), stop_event=StopAfter(1))
    path = ckpt.list_checkpoints(tmp_path / "run")[-1]
    payload = dict(ckpt.load_checkpoint(path).payload, format_version=ckpt.FORMAT_VERSION + 1)
    torch.save(payload, path)
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(ckpt.CheckpointTooNew) as caught:
        train(tiny_options())
    message = str(caught.value)
    assert f"{path} was written by a newer sg2-container (format_version {ckpt.FORMAT_VERSION + 1}; " \
           f"this build reads up to {ckpt.FORMAT_VERSION}): upgrade sg2-container" in message
    assert folder_bytes(tmp_path / "run") == before  # not skipped, not overwritten, nothing added


def test_a_version_1_checkpoint_migrates_and_resumes_bit_for_bit(tiny_options, tmp_path):
    straight = train(tiny_options(outdir=str(tmp_path / "straight")))
    assert straight.finished
    options = tiny_options(outdir=str(tmp_path / "old"))
    stopped = train(options, stop_event=StopAfter(3))
    # Only the version-1 file is left, as a run written by the previous release would have it.
    for path in ckpt.list_checkpoints(tmp_path / "old")[:-1]:
        path.unlink()
    torch.save(as_version_1(ckpt.load_checkpoint(stopped.last_checkpoint).payload),
               stopped.last_checkpoint)
    migrated = ckpt.load_checkpoint(stopped.last_checkpoint)
    assert migrated["format_version"] == ckpt.FORMAT_VERSION
    assert migrated.counters.cur_nimg == 12 and len(migrated.ranks) == 1
    assert migrated["run"]["gamma"] == 1.0 and migrated["run"]["dataset"] is None

    resumed = train(options)
    assert resumed.finished and resumed.cur_nimg == 24
    _assert_same_training_state(ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")[-1]),
                                ckpt.load_checkpoint(resumed.last_checkpoint))


def test_damaged_checkpoints_are_moved_aside_counted_and_never_overwritten(tiny_options, tmp_path, caplog):
    options = tiny_options(snap=1)
    train(options, stop_event=StopAfter(3))  # checkpoints at 4 (tick 0) and 12 (tick 1)
    run = tmp_path / "run"
    names = [p.name for p in ckpt.list_checkpoints(run)]
    assert names == ["checkpoint-000000000004.pt", "checkpoint-000000000012.pt"]
    flipped = run / names[-1]
    flip_a_bit_in_the_largest_tensor(flipped)
    with pytest.raises(ckpt.CheckpointUnreadable, match="bad checksum"):
        ckpt.load_checkpoint(flipped)  # torch.load alone would have loaded it silently
    random_bytes = run / "checkpoint-000000000016.pt"
    random_bytes.write_bytes(bytes(range(256)) * 8)
    (run / "corrupt").mkdir()
    (run / "corrupt" / random_bytes.name).write_bytes(b"an earlier casualty")
    damaged = {names[-1]: flipped.read_bytes(), random_bytes.name: random_bytes.read_bytes()}

    with caplog.at_level(logging.WARNING):
        result = train(options)
    assert result.finished and result.cur_nimg == 24
    corrupt = folder_bytes(run / "corrupt")
    assert corrupt == {names[-1]: damaged[names[-1]],
                       "checkpoint-000000000016.pt": b"an earlier casualty",
                       "checkpoint-000000000016.1.pt": damaged[random_bytes.name]}
    assert any("2 unreadable checkpoint(s) moved to corrupt/; continuing from "
               "checkpoint-000000000004.pt" in r.message for r in caplog.records)
    assert any("3 file(s) in corrupt/" in r.message for r in caplog.records)


def test_a_finished_run_continued_with_changed_gamma_is_refused_with_the_list(tiny_options, tmp_path, caplog):
    train(tiny_options(), stop_event=StopAfter(1))
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(ckpt.ChangedOptions) as caught:
        train(tiny_options(gamma=2.0, seed=8, mirror=False))
    message = str(caught.value)
    for change in ("gamma: 1.0 -> 2.0", "seed: 7 -> 8", "mirror: True -> False"):
        assert change in message
    assert "--allow-changed-options" in message and "allow_changed_options=true" in message
    assert folder_bytes(tmp_path / "run") == before

    with caplog.at_level(logging.WARNING):
        result = train(tiny_options(gamma=2.0, allow_changed_options=True))
    assert result.finished
    assert any("continuing with changed options" in r.message and "gamma: 1.0 -> 2.0" in r.message
               for r in caplog.records)
    assert ckpt.load_checkpoint(result.last_checkpoint)["run"]["gamma"] == 2.0


def test_another_freezed_is_refused_even_when_changes_are_allowed(tiny_options, tmp_path):
    """Frozen D layers are buffers, so the D optimizer's saved state has other parameters: the
    resume crashed in Adam's load_state_dict (exit 2) instead of saying which option did it."""
    train(tiny_options(), stop_event=StopAfter(1))
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(ckpt.ChangedOptions) as caught:
        train(tiny_options(freezed=2, allow_changed_options=True))
    message = str(caught.value)
    assert "(freezed 0 -> 2 changes which D layers are trained)" in message
    assert "use a new outdir" in message
    assert folder_bytes(tmp_path / "run") == before


@pytest.mark.parametrize("change,words", [
    (dict(map=3), "map: 2 -> 3"),
    (dict(cmax=32), "cmax: 16 -> 32"),
])
def test_a_change_of_the_networks_shapes_never_suggests_allowing_it(tiny_options, tmp_path,
                                                                    change, words):
    """The refusal offered allow_changed_options, which then failed on the first tensor of
    another shape: one more job start on SageMaker for an advice that could never work."""
    train(tiny_options(), stop_event=StopAfter(1))
    before = folder_bytes(tmp_path / "run")
    for allow in (False, True):
        with pytest.raises(ckpt.ChangedOptions) as caught:
            train(tiny_options(allow_changed_options=allow, **change))
        message = str(caught.value)
        assert words in message and "change the networks' shapes" in message
        assert "even with allow_changed_options" in message and "use a new outdir" in message
        assert "--allow-changed-options (" not in message
    assert folder_bytes(tmp_path / "run") == before


def test_options_that_only_extend_or_observe_the_run_may_change(tiny_options, tmp_path):
    train(tiny_options(), stop_event=StopAfter(1))
    moved_data = tmp_path / "elsewhere.zip"
    shutil.copy(tiny_options().data, moved_data)  # same content, another path
    result = train(tiny_options(kimg=0.032, snap=3, keep=1, kimg_per_tick=0.012, workers=1,
                                batch_gpu=2, nobench=True, data=str(moved_data),
                                gamma=None))  # paper256's preset gamma is the 1.0 it ran with
    assert result.finished and result.cur_nimg == 32


def test_a_version_1_checkpoint_that_cannot_be_upgraded_stops_the_job_untouched(tiny_options, tmp_path):
    result = train(tiny_options(), stop_event=StopAfter(1))
    old = as_version_1(ckpt.load_checkpoint(result.last_checkpoint).payload)
    del old["loop"]["pl_mean"]  # intact file (CRCs match), but not a layout version 1 ever had
    torch.save(old, result.last_checkpoint)
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(UserError, match="cannot upgrade this format_version 1 checkpoint.*left untouched"):
        train(tiny_options())
    assert folder_bytes(tmp_path / "run") == before  # not moved aside: no silent restart from zero


def test_other_dataset_content_is_refused(tiny_options, tmp_path):
    train(tiny_options(), stop_event=StopAfter(1))
    other = write_synthetic_dataset(tmp_path / "other.zip", count=33, resolution=16)
    with pytest.raises(ckpt.ChangedOptions, match="dataset content: sha256:.* -> sha256:"):
        train(tiny_options(data=str(other)))


def test_every_option_is_either_compared_or_free_to_change():
    fields = {f.name for f in dataclasses.fields(TrainingOptions)}
    assert ckpt.FREE_TO_CHANGE <= fields
    meaning_keys = {"cfg", "batch", "gamma", "cbase", "cmax", "map", "fp32", "seed", "mirror",
                    "cond", "subset", "freezed", "aug", "augpipe", "target", "p"}
    assert ckpt.compared_options() == meaning_keys


def test_dataset_fingerprint_follows_content_not_path(tmp_path):
    from sg2_container.data.synthetic import write_synthetic_folder

    a = write_synthetic_dataset(tmp_path / "a.zip", count=8, resolution=16)
    shutil.copy(a, tmp_path / "b.zip")
    c = write_synthetic_dataset(tmp_path / "c.zip", count=9, resolution=16)
    assert content_fingerprint(a) == content_fingerprint(tmp_path / "b.zip") != content_fingerprint(c)
    folder = write_synthetic_folder(tmp_path / "f", count=4, resolution=16)
    first = content_fingerprint(folder)
    shutil.copytree(folder, tmp_path / "g")
    assert content_fingerprint(tmp_path / "g") == first
    image = sorted((tmp_path / "g").rglob("*.jpg"))[0]
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other pixels (these files are under 4 KiB)
    image.write_bytes(bytes(data))
    changed = content_fingerprint(tmp_path / "g")
    assert changed != first
    (tmp_path / "g" / "notes.txt").write_text("not read by training")
    assert content_fingerprint(tmp_path / "g") == changed


class PoisonAfter:
    """A stop event that never stops but, from the `steps`-th step on, poisons G's mapping."""

    def __init__(self, steps):
        self.calls, self.steps, self.poison = 0, steps, False

    def is_set(self):
        self.calls += 1
        self.poison = self.calls >= self.steps
        return False


def test_a_diverging_run_stops_and_keeps_the_last_finite_checkpoint(tiny_options, tmp_path):
    from sg2_container.models.networks.mapping import MappingNetwork

    event = PoisonAfter(2)

    def nan_output(module, args, output):
        if isinstance(module, MappingNetwork) and module.training and event.poison:
            return torch.full_like(output, math.nan)  # e.g. an overflow in the mapping layers
        return None

    hook = torch.nn.modules.module.register_module_forward_hook(nan_output)
    try:
        with pytest.raises(ckpt.TrainingDiverged) as caught:
            train(tiny_options(), stop_event=event)
    finally:
        hook.remove()
    message = str(caught.value)
    assert "training diverged at kimg 0.012" in message
    assert "G: mapping.w_avg" in message and "G_ema: mapping.w_avg" in message
    assert "Lower gamma (now 1)" in message and "checkpoint-000000000004.pt" in message
    run = tmp_path / "run"
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["checkpoint-000000000004.pt"]
    assert not (run / "network-final.pt").exists()
    assert sorted(p.name for p in run.glob("network-*.pt")) == ["network-snapshot-000000.pt"]
    assert ckpt.non_finite_tensors({n: ckpt.load_checkpoint(run / "checkpoint-000000000004.pt")[n]
                                    for n in ckpt.NETWORKS}) == []


def test_a_non_finite_payload_is_never_written(tiny_options, tmp_path):
    result = train(tiny_options(), stop_event=StopAfter(1))
    payload = ckpt.load_checkpoint(result.last_checkpoint).payload
    payload["D"] = dict(payload["D"])
    name = next(iter(payload["D"]))
    payload["D"][name] = torch.full_like(payload["D"][name], math.inf)
    payload["loop"] = dict(payload["loop"], cur_nimg=8)
    with pytest.raises(ckpt.TrainingDiverged, match=f"D: {name}"):
        ckpt.save_checkpoint(tmp_path / "run", payload, keep=3)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["checkpoint-000000000004.pt"]

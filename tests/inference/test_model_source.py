"""Model loading for inference: files, folders and a training job's model.tar.gz, safely."""
import io
import tarfile
import tempfile

import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.inference.model_source import load_generator
from sg2_container.models.source import extract_tar


def _tar(path, members):
    """members: (TarInfo fields..., data) -> a .tar.gz written with exactly these headers."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_loads_a_model_file_a_folder_and_a_training_jobs_tarball(tmp_path, tiny_model):
    G, path = tiny_model
    # a training job's model folder: the model file among other files, name irrelevant
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("# card")
    (folder / "samples.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "weights.bin").write_bytes(path.read_bytes())
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    job_input = tmp_path / "processing-model"
    job_input.mkdir()
    (tmp_path / "model.tar.gz").rename(job_input / "model.tar.gz")
    for source in (path, folder, job_input, job_input / "model.tar.gz"):
        loaded = load_generator(source)
        assert _same_weights(loaded.G, G), source
        assert not loaded.G.training
    assert load_generator(job_input).path.name == "weights.bin"


def test_a_folder_with_two_model_files_asks_which(tmp_path, tiny_model):
    _, path = tiny_model
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.pt").write_bytes(path.read_bytes())
    (folder / "b.pt").write_bytes(path.read_bytes())
    with pytest.raises(UserError, match="several model files"):
        load_generator(folder)


def test_model_pt_wins_among_several_and_hidden_copies_are_not_candidates(tmp_path, tiny_model):
    _, path = tiny_model
    folder = tmp_path / "exported"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / ".ipynb_checkpoints" / "model.pt").write_bytes(path.read_bytes())
    (folder / "._model.pt").write_bytes(path.read_bytes())
    (folder / "network-snapshot-000010.pt").write_bytes(path.read_bytes())
    assert load_generator(folder).path.name == "network-snapshot-000010.pt"
    (folder / "model.pt").write_bytes(path.read_bytes())
    assert load_generator(folder).path == folder / "model.pt"


def test_a_folder_without_a_model_names_what_it_holds(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    import zipfile

    with zipfile.ZipFile(folder / "dataset.zip", "w") as archive:  # a zip, but no torch file
        archive.writestr("img.png", b"x")
    with pytest.raises(UserError, match="no model file.*notes.txt"):
        load_generator(folder)


@pytest.mark.parametrize("member,words", [
    (_file("../evil.txt"), "outside the archive"),
    (_file("ok/../../evil.txt"), "outside the archive"),
    (_file("/ABSOLUTE/evil.txt"), "absolute path"),
    (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (_special("hard", tarfile.LNKTYPE, "model.pt"), "hard link"),
    (_special("dev", tarfile.CHRTYPE), "device file"),
    (_special("blk", tarfile.BLKTYPE), "device file"),
    (_special("fifo", tarfile.FIFOTYPE), "FIFO"),
])
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, tiny_model, member, words,
                                                            monkeypatch):
    _, path = tiny_model
    if member[0].name.startswith("/ABSOLUTE/"):  # absolute, and pointing into this test's folder
        member = _file(str(tmp_path / "absolute-evil.txt"))
    archive = _tar(tmp_path / "model.tar.gz",
                   [_file("model.pt", path.read_bytes()), member])
    jail = tmp_path / "jail" / "extract"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=words):
        extract_tar(archive, jail)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # load_generator extracts into a temporary folder: put that folder under tmp_path too.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=words):
        load_generator(archive)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_archive_bounds(tmp_path):
    archive = _tar(tmp_path / "big.tar.gz", [_file(f"f{i}", b"0123456789") for i in range(5)])
    with pytest.raises(UserError, match="more than 3 members"):
        extract_tar(archive, tmp_path / "a", max_members=3)
    with pytest.raises(UserError, match="GiB once extracted"):
        extract_tar(archive, tmp_path / "b", max_bytes=40)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    written = extract_tar(archive, tmp_path / "c")
    assert sorted(p.name for p in written) == [f"f{i}" for i in range(5)]


def test_a_corrupt_archive_is_a_user_error(tmp_path):
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\x00" * 64)
    with pytest.raises(UserError):
        load_generator(bad)


def test_a_run_folder_serves_its_final_model_and_checkpoints_are_no_candidates(tmp_path,
                                                                               tiny_model):
    """`--network runs/first` after training: the checkpoints (the run's whole state) were
    listed as model files and the folder refused as ambiguous."""
    import torch

    _, path = tiny_model
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "checkpoint-000000000008.pt"
    torch.save({"format": "sg2-checkpoint", "format_version": 2}, checkpoint)
    (run / "network-snapshot-000000.pt").write_bytes(path.read_bytes())
    assert load_generator(run).path.name == "network-snapshot-000000.pt"  # the only model
    (run / "network-final.pt").write_bytes(path.read_bytes())
    assert load_generator(run).path.name == "network-final.pt"
    with pytest.raises(UserError, match=r"checkpoint-000000000008.pt: a training checkpoint "
                                        r"\(the run's whole state\), not a model file: use "
                                        r"network-final.pt or a network-snapshot-\*.pt"):
        load_generator(checkpoint)

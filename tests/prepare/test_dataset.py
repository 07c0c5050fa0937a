"""ImageFolderDataset: the reader training uses; its errors must name the file and the rule."""

from __future__ import annotations

import json
import struct
import zipfile
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

from sg2_container.data.dataset import ImageFolderDataset, check_batch_fits, count_images
from sg2_container.errors import UserError
from tests.prepare.inputs import make_images

FOUR = {f"{i // 2}/img{i}.png": (16, 16) for i in range(4)}


def _zip_folder(folder, dest):
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return dest


@pytest.mark.parametrize("as_zip", [False, True])
def test_reads_images_sorted_by_name(tmp_path, as_zip):
    folder = make_images(tmp_path / "set", {**FOUR, "extra/z.jpg": (16, 16)})
    (folder / "notes.txt").write_text("ignored")
    path = _zip_folder(folder, tmp_path / "set.zip") if as_zip else folder
    dataset = ImageFolderDataset(path)
    assert len(dataset) == 5
    assert [dataset.image_name(i) for i in range(5)] == [*sorted(FOUR), "extra/z.jpg"]
    assert (dataset.resolution, dataset.num_channels, dataset.image_shape) == (16, 3, (3, 16, 16))
    image, label = dataset[4]
    assert image.shape == (3, 16, 16) and image.dtype == np.uint8
    assert label.dtype == np.float32 and label.shape == (0,)
    assert (dataset.label_dim, dataset.has_labels) == (0, False)
    with pytest.raises(IndexError):
        dataset[5]


def test_grayscale_has_one_channel(tmp_path):
    dataset = ImageFolderDataset(make_images(tmp_path / "g", FOUR, mode="L"))
    assert dataset.image_shape == (1, 16, 16) and dataset[0][0].shape == (1, 16, 16)


def test_xflip_doubles_and_mirrors(tmp_path):
    dataset = ImageFolderDataset(make_images(tmp_path / "s", FOUR), xflip=True)
    assert len(dataset) == 8
    for i in range(4):
        assert (dataset[i + 4][0] == dataset[i][0][:, :, ::-1]).all()
        assert dataset[i + 4][0].flags["C_CONTIGUOUS"]


def test_max_size_is_a_seeded_sorted_subset(tmp_path):
    folder = make_images(tmp_path / "s", {f"{i:02d}.png": (8, 8) for i in range(20)})
    a = ImageFolderDataset(folder, max_size=5, random_seed=3)
    b = ImageFolderDataset(folder, max_size=5, random_seed=3, xflip=True)
    names = [a.image_name(i) for i in range(5)]
    indices = np.arange(20)
    np.random.RandomState(3).shuffle(indices)
    assert names == [f"{i:02d}.png" for i in sorted(indices[:5])]
    assert len(b) == 10 and [b.image_name(i + 5) for i in range(5)] == names
    assert len(ImageFolderDataset(folder, max_size=50)) == 20


def test_class_labels_become_one_hot_and_vectors_stay(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    names = sorted(FOUR)
    (folder / "dataset.json").write_text(
        json.dumps({"labels": [[n, i % 3] for i, n in enumerate(names)]})
    )
    dataset = ImageFolderDataset(folder, use_labels=True)
    assert dataset.label_dim == 3 and dataset.has_labels and dataset.label_kind == "class"
    assert dataset[3][1].tolist() == [1, 0, 0] and dataset[2][1].tolist() == [0, 0, 1]
    assert dataset.class_counts() == [2, 1, 1]
    assert ImageFolderDataset(folder).label_dim == 0  # labels only when asked for

    (folder / "dataset.json").write_text(
        json.dumps({"labels": [[n, [i, 0.5]] for i, n in enumerate(names)]})
    )
    vectors = ImageFolderDataset(folder, use_labels=True)
    assert vectors.label_dim == 2 and vectors.label_kind == "vector"
    assert vectors.get_label(1).tolist() == [1.0, 0.5]


def test_pickles_without_an_open_zip(tmp_path):
    path = _zip_folder(make_images(tmp_path / "s", FOUR), tmp_path / "s.zip")
    dataset = ImageFolderDataset(path)
    first = dataset[0][0]
    clone = ForkingPickler.loads(ForkingPickler.dumps(dataset))
    assert clone._zip is None
    assert (clone[0][0] == first).all()


def test_mixed_sizes_name_the_first_odd_file(tmp_path):
    folder = make_images(tmp_path / "s", {**FOUR, "1/img3.png": (32, 32)})
    with pytest.raises(
        UserError, match=r"'1/img3.png' is 32x32 with 3 channels; expected 16x16 with 3 channels"
    ):
        ImageFolderDataset(folder)


def test_mixed_channels_name_the_file(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    make_images(folder, {"2/gray.png": (16, 16)}, mode="L")
    with pytest.raises(UserError, match=r"'2/gray.png' is 16x16 with 1 channel; expected"):
        ImageFolderDataset(folder)


def test_non_power_of_two_and_non_square_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"'a.png' is 24x24; the resolution must be a power of two"):
        ImageFolderDataset(make_images(tmp_path / "p", {"a.png": (24, 24)}))
    with pytest.raises(UserError, match=r"'a.png' is 32x16; images must be square"):
        ImageFolderDataset(make_images(tmp_path / "q", {"a.png": (32, 16)}))
    with pytest.raises(UserError, match=r"expected resolution 32"):
        ImageFolderDataset(make_images(tmp_path / "r", {"a.png": (16, 16)}), resolution=32)


def test_rgba_and_palette_pngs_are_refused_with_a_hint(tmp_path):
    from PIL import Image

    folder = tmp_path / "s"
    folder.mkdir()
    Image.new("RGBA", (16, 16)).save(folder / "a.png")
    with pytest.raises(
        UserError, match=r"'a.png' is a 8-bit RGBA PNG; expected 8-bit gray or RGB .*sg2 prepare"
    ):
        ImageFolderDataset(folder)


def test_corrupt_image_names_the_file(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    (folder / "1" / "img9.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UserError, match=r"'1/img9.png' is not a valid PNG"):
        ImageFolderDataset(folder)
    (folder / "1" / "img9.png").unlink()
    (folder / "1" / "img9.jpg").write_bytes(b"no jpeg here")
    with pytest.raises(UserError, match=r"'1/img9.jpg' is not a readable PNG or JPEG"):
        ImageFolderDataset(folder)


def test_truncated_image_fails_on_load_naming_the_file(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    path = folder / "1" / "img3.png"
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixels cut
    dataset = ImageFolderDataset(folder)
    with pytest.raises(UserError, match=r"cannot decode '1/img3.png'"):
        dataset[3]


def _damage_member(path, name, at):
    """Flips one byte `at` bytes into a member's stored data, as a bad upload would."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    at_header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[at_header + 26:at_header + 30])
    data[at_header + 30 + name_len + extra_len + at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_damaged_zip_member_is_named_when_read(tmp_path, compression):
    big = {name: (128, 128) for name in FOUR}  # 48 KiB of noise: start-up reads the first 4 KiB
    folder = make_images(tmp_path / "s", big)
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name in sorted(big):
            zf.write(folder / name, name)
    _damage_member(path, "1/img3.png", 30_000)
    dataset = ImageFolderDataset(path)
    dataset[0]
    with pytest.raises(UserError,
                       match=r"'1/img3.png' in the zip is damaged .* re-run `sg2 prepare`"):
        dataset[3]


def test_a_damaged_member_read_in_a_data_worker_keeps_its_message(tmp_path):
    """torch re-raises a worker's error with the worker's traceback in its text; the job's
    failure file keeps 1 KB, so the text must be the message alone."""
    from torch.utils.data import DataLoader

    big = {name: (128, 128) for name in FOUR}
    path = _zip_folder(make_images(tmp_path / "s", big), tmp_path / "set.zip")
    _damage_member(path, "1/img3.png", 30_000)
    with pytest.raises(UserError) as info:
        list(DataLoader(ImageFolderDataset(path), batch_size=2, num_workers=1))
    assert str(info.value) == (f"dataset {str(path)!r}: '1/img3.png' in the zip is damaged (CRC "
                               "mismatch); upload the zip again, or re-run `sg2 prepare` to make "
                               "a new one")


def test_a_damaged_jpeg_in_a_zip_is_named_at_start(tmp_path):
    folder = make_images(tmp_path / "s", {"a.jpg": (16, 16), "b.jpg": (16, 16)})
    path = _zip_folder(folder, tmp_path / "set.zip")
    _damage_member(path, "b.jpg", 50)
    with pytest.raises(UserError, match=r"'b.jpg' in the zip is damaged \(CRC mismatch\)"):
        ImageFolderDataset(path)


def test_a_corrupt_or_cut_zip_is_not_called_missing(tmp_path):
    good = _zip_folder(make_images(tmp_path / "s", FOUR), tmp_path / "good.zip")
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "noise.zip").write_bytes(bytes(range(256)) * 8)
    for name in ("cut.zip", "noise.zip"):
        with pytest.raises(UserError, match="not a valid zip file .* incomplete upload"):
            ImageFolderDataset(tmp_path / name)
    (tmp_path / "set.tar").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a zip file; the dataset is a zip .* or a folder"):
        ImageFolderDataset(tmp_path / "set.tar")


def test_a_folder_holding_the_zip_says_to_point_at_it(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    _zip_folder(make_images(tmp_path / "s", FOUR), channel / "train.zip")
    with pytest.raises(UserError, match=r"folder holds train.zip: point data at the zip, e.g. "
                                        r"'.*train/train.zip'"):
        ImageFolderDataset(channel)


def test_a_folder_holding_archives_further_down_names_them(tmp_path):
    channel = tmp_path / "train"
    (channel / "animeface").mkdir(parents=True)
    (channel / "._animeface.zip").write_bytes(b"macOS metadata")
    _zip_folder(make_images(tmp_path / "s", FOUR), channel / "animeface" / "animeface.zip")
    with pytest.raises(UserError, match=r"holds animeface/animeface.zip: point data at the zip, "
                                        r"e.g. '.*train/animeface/animeface.zip'"):
        ImageFolderDataset(channel)
    (channel / "animeface" / "animeface.zip").rename(channel / "designs.tar.gz")
    with pytest.raises(UserError, match=r"holds designs.tar.gz, which training does not read: "
                                        r"make a training zip of it with `sg2 prepare --source "
                                        r".*train/designs.tar.gz`"):
        ImageFolderDataset(channel)


def test_empty_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(UserError, match="no PNG or JPEG images found"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(UserError, match="missing.zip': not found$"):
        ImageFolderDataset(tmp_path / "missing.zip")


def test_use_labels_without_labels_is_a_clear_error(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    with pytest.raises(UserError, match="labels were asked for .* no dataset.json"):
        ImageFolderDataset(folder, use_labels=True)
    (folder / "dataset.json").write_text(json.dumps({"labels": None}))
    with pytest.raises(UserError, match="labels were asked for"):
        ImageFolderDataset(folder, use_labels=True)


def test_a_missing_label_names_the_image(tmp_path):
    folder = make_images(tmp_path / "s", FOUR)
    names = sorted(FOUR)
    (folder / "dataset.json").write_text(json.dumps({"labels": [[n, 0] for n in names[:-1]]}))
    with pytest.raises(UserError, match=f"no label for '{names[-1]}'"):
        ImageFolderDataset(folder, use_labels=True)
    dataset = ImageFolderDataset(folder)  # unconditional training does not need them
    assert dataset.label_dim == 0 and "no label for" in dataset.label_error


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([["0/img0.png", 0], ["0/img0.png", 1]], r"labels\[1\] names '0/img0.png' a second time"),
        ([["0/img0.png", 0], ["0/img1.png", [1.0]]], "all labels must be of one kind"),
        ([["0/img0.png", -1]], "class indices must be from 0 to 32767"),
        ({"0/img0.png": 1}, r'"labels" must be a list of \[name, label\] pairs'),
    ],
)
def test_one_dataset_json_rule_for_the_reader_and_prepare(tmp_path, labels, match):
    """The reader and `sg2 prepare` parse dataset.json with the same code: same rule, same
    message; the stricter rule (a name given twice is an error) holds for both."""
    from sg2_container.data.options import PrepareOptions
    from sg2_container.data.prepare import prepare

    folder = make_images(tmp_path / "s", FOUR)
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    with pytest.raises(UserError, match=match) as read:
        ImageFolderDataset(folder, use_labels=True)
    assert "dataset.json" in str(read.value) and str(folder) in str(read.value)
    with pytest.raises(UserError, match=match):
        prepare(PrepareOptions(source=str(folder), dest=str(tmp_path / "out.zip"), labels="json",
                               width=16, height=16))


@pytest.mark.parametrize("as_zip", [False, True])
def test_a_batch_larger_than_the_dataset_names_both(tmp_path, as_zip):
    folder = make_images(tmp_path / "s", FOUR)
    path = str(_zip_folder(folder, tmp_path / "set.zip") if as_zip else folder)
    assert (count_images(path), count_images(path, mirror=True)) == (4, 8)
    assert count_images(path, subset=3, mirror=True) == 6
    check_batch_fits(path, 8, None, True)
    check_batch_fits(path, None, None, False)  # the preset's batch loops, as in the reference
    with pytest.raises(UserError, match=r"batch=100000 is larger than the dataset: .* gives 8 "
                                        r"images \(mirror doubles them\); choose a batch of at "
                                        r"most 8"):
        check_batch_fits(path, 100000, None, True)
    with pytest.raises(UserError, match=r"gives 2 images with subset=2"):
        check_batch_fits(path, 4, 2, False)
    assert count_images(tmp_path / "missing.zip") is None  # opening it says why

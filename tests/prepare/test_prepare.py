"""`sg2 prepare` end to end on generated uploads: counts, layout, determinism, re-runs."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sg2_container.data.dataset import ImageFolderDataset
from sg2_container.data.options import PrepareOptions
from sg2_container.data.prepare import prepare
from sg2_container.errors import UserError
from tests.prepare.inputs import MAX_PIXELS, SIZE, exif_rotated_jpeg, make_images, write_folder


def _options(source: Path, dest: Path, **kwargs: object) -> PrepareOptions:
    base: dict[str, object] = {
        "source": str(source),
        "dest": str(dest),
        "width": SIZE,
        "height": SIZE,
        "max_pixels": MAX_PIXELS,
        "workers": 1,
    }
    base.update(kwargs)
    return PrepareOptions(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "tar.gz"])
def test_every_troublesome_input_is_counted(tmp_path, upload, upload_sources, kind):
    dest = tmp_path / "out" / "train.zip"
    report = prepare(_options(upload_sources[kind], dest, workers=2))

    saved = json.loads((dest.parent / "prepare_report.json").read_text())
    assert saved["num_inputs"] == len(upload.files)
    assert saved["num_written"] == upload.kept
    assert saved["skipped"] == upload.skipped
    assert saved["converted"] == upload.converted
    assert saved["num_skipped"] == sum(upload.skipped.values())
    assert {f["name"]: f["reason"] for f in saved["skipped_files"]} == upload.skip_reasons
    # The bombs' detail quotes their size and --max-pixels (Pillow's text quoted its error
    # threshold, twice the limit, for the larger one).
    details = {f["name"]: f.get("detail") for f in saved["skipped_files"]}
    assert details["bad/bomb.png"] == f"1200000 pixels, over --max-pixels {MAX_PIXELS}"
    assert details["bad/bomb_big.png"] == f"2100000 pixels, over --max-pixels {MAX_PIXELS}"
    assert report.summary().startswith(f"wrote {upload.kept} of {len(upload.files)} files")

    dataset = ImageFolderDataset(dest)
    assert len(dataset) == upload.kept
    assert dataset.image_shape == (3, SIZE, SIZE)
    assert not dataset.has_labels and dataset.label_kind is None
    image, label = dataset[0]
    assert image.dtype == np.uint8 and image.shape == (3, SIZE, SIZE) and label.shape == (0,)


def test_sources_and_worker_counts_give_identical_bytes(tmp_path, upload_sources):
    outputs = []
    for kind, workers in [("folder", 1), ("folder", 2), ("zip", 2), ("tar.gz", 1)]:
        dest = tmp_path / f"{kind}-{workers}.zip"
        prepare(_options(upload_sources[kind], dest, workers=workers))
        outputs.append(dest.read_bytes())
    assert all(out == outputs[0] for out in outputs[1:])


def test_spawned_workers_give_the_same_bytes(tmp_path, upload_sources):
    """With other threads alive the pool spawns instead of forking; the output must not care."""
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        prepare(_options(upload_sources["folder"], tmp_path / "spawned.zip", workers=2))
    finally:
        stop.set()
        helper.join()
    prepare(_options(upload_sources["folder"], tmp_path / "inline.zip", workers=1))
    assert (tmp_path / "spawned.zip").read_bytes() == (tmp_path / "inline.zip").read_bytes()


def test_zip_layout_is_the_training_layout(tmp_path, upload_sources, upload):
    dest = tmp_path / "train.zip"
    prepare(_options(upload_sources["folder"], dest))
    with zipfile.ZipFile(dest) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names[:2] == ["00000/img00000000.png", "00000/img00000001.png"]
        assert names[-1] == "dataset.json" and len(names) == upload.kept + 1
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert json.loads(zf.read("dataset.json")) == {"labels": None}
        first = zf.read(names[0])
    assert first.startswith(b"\x89PNG") and b"iCCP" not in first and b"eXIf" not in first


def test_rerun_replaces_output_and_leaves_no_temp_files(tmp_path, upload_sources):
    dest = tmp_path / "train.zip"
    prepare(_options(upload_sources["folder"], dest))
    first = dest.read_bytes()
    prepare(_options(upload_sources["folder"], dest))
    assert dest.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepare_report.json", "train.zip"]


def test_folder_output_has_the_same_layout_and_can_be_rerun(tmp_path, upload_sources, upload):
    dest = tmp_path / "train"
    prepare(_options(upload_sources["folder"], dest))
    prepare(_options(upload_sources["folder"], dest, max_images=3))
    assert sorted(p.name for p in dest.iterdir()) == [
        "00000",
        "dataset.json",
        "prepare_report.json",
    ]
    assert len(list((dest / "00000").iterdir())) == 3
    assert len(ImageFolderDataset(dest)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_folder_output_refuses_a_foreign_nonempty_folder(tmp_path, upload_sources):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "thesis.docx").write_bytes(b"precious")
    with pytest.raises(UserError, match="not empty"):
        prepare(_options(upload_sources["folder"], dest))
    assert (dest / "thesis.docx").read_bytes() == b"precious"


def test_max_images_keeps_the_first_usable_files_in_name_order(tmp_path, upload_sources):
    full, part = tmp_path / "full.zip", tmp_path / "part.zip"
    prepare(_options(upload_sources["folder"], full))
    report = prepare(_options(upload_sources["folder"], part, max_images=4, workers=2))
    assert report.num_written == 4 and report.num_unused > 0
    with zipfile.ZipFile(full) as a, zipfile.ZipFile(part) as b:
        for i in range(4):
            name = f"00000/img{i:08d}.png"
            assert a.read(name) == b.read(name)


def test_small_skip_and_grayscale_output(tmp_path, upload_sources, upload):
    dest = tmp_path / "gray.zip"
    report = prepare(_options(upload_sources["folder"], dest, small="skip", channels=1))
    assert report.skipped["too_small"] == 1
    assert "upscaled" not in report.converted
    assert report.converted["rgb_to_gray"] > 0 and "gray_to_rgb" not in report.converted
    assert ImageFolderDataset(dest).image_shape == (1, SIZE, SIZE)


def test_exif_orientation_is_applied(tmp_path):
    source = write_folder(tmp_path / "src", {"turned.jpg": exif_rotated_jpeg()})
    dest = tmp_path / "out.zip"
    prepare(_options(source, dest))
    image, _ = ImageFolderDataset(dest)[0]
    top, bottom = image[:, 4, SIZE // 2], image[:, SIZE - 4, SIZE // 2]
    assert top[0] > 200 and top[2] < 60  # red on top once turned upright
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_flattened_on_the_background(tmp_path):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rgba).save(src / "clear.png")
    for background, value in [("white", 255), ("black", 0), ("#808080", 128)]:
        dest = tmp_path / f"{background.strip('#')}.zip"
        prepare(_options(src, dest, background=background))
        image, _ = ImageFolderDataset(dest)[0]
        assert (image == value).all()


@pytest.mark.parametrize(
    ("transform", "width", "height", "shape"),
    [
        ("pad", 32, 32, (3, 32, 32)),
        ("center-crop-wide", 32, 16, (3, 32, 32)),
        ("stretch", 16, 16, (3, 16, 16)),
    ],
)
def test_transforms_give_the_output_size(tmp_path, transform, width, height, shape):
    source = make_images(tmp_path / "src", {"a.png": (50, 20), "b.jpg": (20, 70)})
    dest = tmp_path / "out.zip"
    prepare(_options(source, dest, transform=transform, width=width, height=height))
    dataset = ImageFolderDataset(dest)
    assert len(dataset) == 2 and dataset.image_shape == shape


def test_pad_fills_with_the_background(tmp_path):
    source = make_images(tmp_path / "src", {"wide.png": (64, 16)})
    dest = tmp_path / "out.zip"
    prepare(_options(source, dest, transform="pad", background="black"))
    image, _ = ImageFolderDataset(dest)[0]
    assert (image[:, :8] == 0).all() and (image[:, -8:] == 0).all()  # 32x8 strip in the middle
    assert image[:, 12:20].std() > 0


def test_labels_from_dataset_json(tmp_path):
    source = make_images(
        tmp_path / "src", {"a/1.png": (40, 40), "a/2.png": (40, 40), "b/3.png": (40, 40)}
    )
    labels = {"labels": [["a/1.png", 2], ["b/3.png", 0], ["gone.png", 1]]}
    (source / "dataset.json").write_text(json.dumps(labels))
    dest = tmp_path / "out.zip"
    report = prepare(_options(source, dest))
    assert report.skipped == {"missing_label": 1}
    assert report.label_source == "json" and report.label_dim == 3
    assert report.labels_without_image == 1
    dataset = ImageFolderDataset(dest, use_labels=True)
    assert dataset.label_dim == 3 and dataset.has_labels
    assert dataset.get_label(0).tolist() == [0, 0, 1] and dataset.get_label(1).tolist() == [1, 0, 0]


def test_labels_from_class_folders(tmp_path):
    source = make_images(
        tmp_path / "src",
        {
            "cats/1.png": (40, 40),
            "dogs/2.png": (40, 40),
            "cats/3.jpg": (40, 40),
            "root.png": (40, 40),
        },
    )
    dest = tmp_path / "out.zip"
    report = prepare(_options(source, dest, labels="folders"))
    assert report.class_names == ["cats", "dogs"] and report.class_counts == [2, 1]
    assert report.skipped == {"missing_label": 1}
    with zipfile.ZipFile(dest) as zf:
        assert json.loads(zf.read("dataset.json"))["labels"] == [
            ["00000/img00000000.png", 0],
            ["00000/img00000001.png", 0],
            ["00000/img00000002.png", 1],
        ]


def test_nothing_usable_is_a_user_error_with_the_reasons(tmp_path):
    source = write_folder(tmp_path / "src", {"a.txt": b"x", "b.png": b"not a png"})
    dest = tmp_path / "out" / "train.zip"
    with pytest.raises(UserError, match="no usable images among the 2 files.*2 not_an_image"):
        prepare(_options(source, dest))
    assert not dest.exists()
    assert json.loads((dest.parent / "prepare_report.json").read_text())["num_skipped"] == 2


def test_missing_source_names_it(tmp_path):
    with pytest.raises(UserError, match="--source: .*nowhere.* does not exist"):
        prepare(_options(tmp_path / "nowhere", tmp_path / "out.zip"))


def test_output_inside_the_source_folder_is_not_read_back(tmp_path):
    source = make_images(tmp_path / "src", {"a.png": (40, 40), "b.jpg": (40, 40)})
    first = prepare(_options(source, source / "train.zip"))
    second = prepare(_options(source, source / "train.zip"))
    assert first.num_inputs == second.num_inputs == 2 and second.num_skipped == 0


def test_links_to_nothing_fifos_and_folder_links_are_counted(tmp_path):
    """The help says anything unreadable is skipped and counted: these were dropped silently."""
    source = make_images(tmp_path / "src", {"a.png": (40, 40), "sub/b.png": (40, 40)})
    (source / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (source / "loop.png").symlink_to(source / "loop.png")
    os.mkfifo(source / "fifo.png")
    (source / "sub" / "up").symlink_to(source)  # a folder link that would loop if walked
    dest = tmp_path / "out" / "train.zip"
    report = prepare(_options(source, dest))
    saved = json.loads((dest.parent / "prepare_report.json").read_text())
    assert saved["num_written"] == 2 and saved["num_inputs"] == 6
    assert saved["skipped"] == {"broken_link": 2, "folder_link": 1, "not_a_file": 1}
    assert {f["name"]: f["reason"] for f in saved["skipped_files"]} == {
        "dangling.jpg": "broken_link", "loop.png": "broken_link", "fifo.png": "not_a_file",
        "sub/up": "folder_link"}
    assert "skipped 4 (2 broken_link, 1 folder_link, 1 not_a_file)" in report.summary()


def test_a_destination_that_cannot_be_written_is_a_user_error(tmp_path):
    source = make_images(tmp_path / "src", {"a.png": (40, 40)})
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(UserError, match=r"--dest: cannot write in '.*file' \(.*\); give a path "
                                        r"in a writable folder"):
        prepare(_options(source, tmp_path / "file" / "train.zip"))


@pytest.mark.parametrize("report,words", [
    ("folder", "is a folder; give a file name, such as"),
    ("file/report.json", "--report: cannot write in"),
])
def test_a_report_path_that_cannot_be_written_fails_before_any_work(tmp_path, report, words):
    """The report is written after the output is committed: a bad --report crashed there
    ('a bug', exit 2) with the dataset already written."""
    source = make_images(tmp_path / "src", {"a.png": (40, 40)})
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file, not a folder")
    dest = tmp_path / "out" / "train.zip"
    with pytest.raises(UserError, match=words):
        prepare(_options(source, dest, report=str(tmp_path / report)))
    assert not dest.exists()
    assert [p.name for p in (tmp_path / "folder").iterdir()] == []  # no probe left behind
    # A report in a folder that does not exist yet is made, as --dest's is.
    prepare(_options(source, dest, report=str(tmp_path / "new" / "report.json")))
    assert dest.exists() and (tmp_path / "new" / "report.json").is_file()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["report.json"]


def test_leftovers_of_a_killed_run_are_named_and_kept(tmp_path, upload_sources, caplog):
    # A SIGKILLed prepare cannot clean up its hidden temp output and scratch folder; the next
    # run names them (another prepare may be writing them, so they are not removed).
    dest = tmp_path / "out" / "train.zip"
    dest.parent.mkdir()
    temp_zip = dest.parent / ".train.zip.0123abcd.tmp"
    scratch = dest.parent / ".train.zip.work-x1y2"
    other = dest.parent / ".other.zip.0123abcd.tmp"
    for path in (temp_zip, other):
        path.write_bytes(b"partial")
    scratch.mkdir()
    with caplog.at_level("WARNING", logger="sg2_container.data.prepare"):
        prepare(_options(upload_sources["folder"], dest))
    assert (f"an interrupted prepare left 2 temporary file(s) beside {dest}: "
            f"{temp_zip.name}, {scratch.name}; remove them") in caplog.text
    assert temp_zip.exists() and scratch.exists() and other.exists()
    caplog.clear()
    with caplog.at_level("WARNING", logger="sg2_container.data.prepare"):
        prepare(_options(upload_sources["folder"], tmp_path / "elsewhere" / "train.zip"))
    assert "interrupted prepare" not in caplog.text


def test_a_size_training_cannot_read_is_said_up_front(tmp_path, caplog):
    # prepare writes up to 16384 px (other tools), training reads up to 4096: say so before
    # the work, not at the first training run.
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level("WARNING", logger="sg2_container.data.prepare"):
        with pytest.raises(UserError, match="no files found"):
            prepare(_options(empty, tmp_path / "big.zip", width=8192, height=8192))
    assert "writing 8192x8192 images: training reads images up to 4096 px" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="sg2_container.data.prepare"):
        with pytest.raises(UserError, match="no files found"):
            prepare(_options(empty, tmp_path / "fine.zip", width=4096, height=4096))
    assert "training reads" not in caplog.text


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF"])
def test_a_file_cut_inside_its_header_is_truncated_not_corrupt(tmp_path, fmt):
    """docs/prepare.md: `truncated` = the file ends before the image data does. Cut inside the
    header, Pillow fails in other words ('Truncated File Read', struct errors, 'cannot
    identify'), which made such files `corrupt` or `not_an_image`."""
    import io

    from PIL import Image

    from sg2_container.data.convert import convert_image, pillow_limits

    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32, 3), np.uint8)).save(
        buffer, fmt)
    data = buffer.getvalue()
    header_end = {"JPEG": data.find(b"\xff\xda"), "PNG": data.find(b"IDAT"), "BMP": 54,
                  "GIF": data.find(b",")}[fmt]
    options = _options(tmp_path, tmp_path / "out.zip")
    with pillow_limits(MAX_PIXELS):
        outcomes = {cut: convert_image(data[:cut], options)
                    for cut in range(10, header_end + 2)}
        assert convert_image(data, options).skip is None
        assert convert_image(b"\x00\x00\x00\x01Bud1", options).skip == "not_an_image"
    wrong = {cut: (o.skip, o.detail) for cut, o in outcomes.items() if o.skip != "truncated"}
    assert not wrong


def test_a_webp_cut_anywhere_is_truncated():
    """Pillow reads a WebP whole, so the header-read watch cannot see the cut; the RIFF length
    field says the file should be longer."""
    import io

    from PIL import Image

    from sg2_container.data.convert import convert_image, pillow_limits

    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32, 3), np.uint8)).save(
        buffer, "WEBP")
    data = buffer.getvalue()
    options = _options("src", "out.zip")
    with pillow_limits(MAX_PIXELS):
        skips = {convert_image(data[:cut], options).skip for cut in range(12, len(data), 5)}
        assert convert_image(data, options).skip is None
    assert skips == {"truncated"}

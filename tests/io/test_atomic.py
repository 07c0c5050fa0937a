"""The one atomic write: all or nothing at the destination, and the stale-temp cleanup."""
import os
import subprocess
import sys

import pytest

from sg2_container.io.atomic import (
    TEMP_PATTERN,
    destination_of,
    remove_stale_temp_files,
    temp_path,
    write_atomically,
    write_text_atomically,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "options.json"
    write_text_atomically(path, "old")

    def half_then_fail(f):
        f.write(b"new but unfin")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["options.json"]


def test_a_killed_writer_leaves_a_temporary_that_the_cleanup_removes(tmp_path):
    """A real process dies (SIGKILL) mid-write: the destination is untouched, the temporary
    it leaves matches the pattern, and only such files are removed."""
    target = tmp_path / "checkpoint-000000000100.pt"
    target.write_bytes(b"committed")
    (tmp_path / "notes.tmp").write_text("a user's file")
    code = (
        "import os, signal, sys\n"
        "from sg2_container.io.atomic import write_atomically\n"
        "def write(f):\n"
        "    f.write(b'partial'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"write_atomically({str(target)!r}, write)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=60,
                          check=False)
    assert done.returncode == -9
    assert target.read_bytes() == b"committed"
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert TEMP_PATTERN.match(left.name) and left.name.startswith(".checkpoint-000000000100.pt.")
    assert remove_stale_temp_files(tmp_path) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000000000100.pt", "notes.tmp"]


def test_temporary_names_are_hidden_siblings_and_unique(tmp_path):
    a, b = temp_path(tmp_path / "model.pt"), temp_path(tmp_path / "model.pt")
    assert a != b and a.parent == tmp_path and a.name.startswith(".model.pt.")
    assert TEMP_PATTERN.match(a.name) and not TEMP_PATTERN.match("model.pt")


def test_a_temporary_name_may_keep_the_suffix_for_writers_that_need_it(tmp_path):
    kept = temp_path(tmp_path / "proj.mp4", keep_suffix=True)
    assert kept.suffix == ".mp4" and kept.name.startswith(".proj.mp4.")
    assert TEMP_PATTERN.match(kept.name)
    kept.write_bytes(b"half a video")
    # A user's hidden files, even with hex-looking parts, are not temporaries of ours.
    users = [".notes.mp4", ".report.20240101.tmp.csv", ".walk.gif.0123abcd.tmp.mp4"]
    for name in users:
        (tmp_path / name).write_bytes(b"a user's hidden file")
    assert remove_stale_temp_files(tmp_path) == [kept]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users)


def test_the_cleanup_can_be_kept_to_some_destinations(tmp_path):
    mine, theirs = temp_path(tmp_path / "first"), temp_path(tmp_path / "second.png")
    mine.mkdir()
    theirs.write_bytes(b"another writer's half file")
    assert destination_of(mine.name) == "first" and destination_of(theirs.name) == "second.png"
    assert remove_stale_temp_files(tmp_path, destinations=["first", "third"]) == [mine]
    assert list(tmp_path.iterdir()) == [theirs]


def test_the_cleanup_of_a_missing_folder_is_empty(tmp_path):
    assert remove_stale_temp_files(tmp_path / "absent") == []

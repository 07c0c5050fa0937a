"""Fixtures: the troublesome upload as a folder, a zip (in one top folder), a tar, a tar.gz."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.prepare.inputs import UploadSet, troublesome_upload, write_folder, write_tar, write_zip


@pytest.fixture(scope="session")
def upload() -> UploadSet:
    return troublesome_upload()


@pytest.fixture(scope="session")
def upload_sources(tmp_path_factory: pytest.TempPathFactory, upload: UploadSet) -> dict[str, Path]:
    """The same upload as a folder, a zip (wrapped in one top folder), a tar and a tar.gz."""
    root = tmp_path_factory.mktemp("upload")
    return {
        "folder": write_folder(root / "folder", upload.files),
        "zip": write_zip(root / "upload.zip", upload.files, prefix="upload/"),
        "tar": write_tar(root / "upload.tar", upload.files),
        "tar.gz": write_tar(root / "upload.tar.gz", upload.files, mode="w:gz"),
    }

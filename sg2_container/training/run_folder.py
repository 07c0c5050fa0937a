"""The run folder (`outdir`) is checked before anything is written into it: training writes,
prunes and (on SageMaker) syncs that folder, so it must never be a system folder or someone
else's files."""
from __future__ import annotations

import os
import re
from pathlib import Path

from sg2_container.errors import UserError

# Folders no run may write into (as themselves: sub-folders of /home or /tmp are fine).
SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                  "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var")
# What a run leaves in its folder; a folder holding only these (or nothing) is ours to use.
OWN_NAMES = re.compile(
    r"^(checkpoint-\d+\.pt|network-snapshot-\d+\.(pt|pkl)|network-final\.pt|training_options\.json"
    r"|stats\.jsonl|log\.txt|reals\.png|fakes(_init|\d+)\.png|events\.out\.tfevents\..*"
    r"|metric-.*\.jsonl|corrupt|\..*\.tmp|.*\.lock)$")


def check_run_folder(outdir: str | os.PathLike) -> Path:
    """`outdir` resolved; a UserError when it is a system folder or holds other files."""
    if "://" in str(outdir):  # Path() would make s3://b/x the local folder s3:/b/x
        raise UserError(f"outdir={str(outdir)!r} is not allowed: training writes to a local "
                        "folder; give a path (on SageMaker, /opt/ml/checkpoints is synced to the "
                        "estimator's checkpoint_s3_uri)")
    path = Path(outdir).expanduser().resolve()
    if str(path) in SYSTEM_FOLDERS:
        raise UserError(f"outdir={str(outdir)!r} is not allowed: a system folder; give a folder of "
                        "its own for the run, e.g. runs/first")
    if path.exists() and not path.is_dir():
        raise UserError(f"outdir={str(outdir)!r} is not allowed: it is a file, not a folder")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not OWN_NAMES.match(p.name))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise UserError(f"outdir={str(outdir)!r} is not allowed: it holds files that are not "
                            f"this run's ({shown}); give an empty folder or an earlier run's folder")
    return path

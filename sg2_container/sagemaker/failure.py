"""The failure file SageMaker turns into a job's failure reason: short, most important first."""

from __future__ import annotations

from pathlib import Path

from sg2_container.io.atomic import write_text_atomically

# SageMaker keeps the first 1024 bytes; stay below so nothing we write is cut mid-character.
MAX_FAILURE_BYTES = 1023


def failure_text(text: str) -> str:
    """One line (newlines folded), cut to fit MAX_FAILURE_BYTES of UTF-8."""
    line = " ".join(text.split())
    data = line.encode("utf-8")[:MAX_FAILURE_BYTES]
    return data.decode("utf-8", errors="ignore")


def write_failure(path: Path, text: str) -> None:
    """Writes the reason atomically; call it last, just before exiting non-zero."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, failure_text(text))

"""Progress: a redrawn bar with an ETA on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import logging

from sg2_container.data.progress import Progress


def test_bar_on_a_terminal_ends_with_a_newline():
    stream = io.StringIO()
    bar = Progress(10, stream=stream, interactive=True, redraw_s=0.0)
    for _ in range(10):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\rprepare [") and "10/10" in text and "ETA" in text
    assert text.endswith("\n")


def test_log_lines_when_not_interactive(caplog):
    stream = io.StringIO()
    bar = Progress(4, stream=stream, interactive=False, log_every_s=0.0)
    with caplog.at_level(logging.INFO, logger="sg2_container.data.progress"):
        bar.update(2)
        bar.close()
    assert stream.getvalue() == ""
    assert "prepare: 2/4 files (50%)" in caplog.text and "ETA" in caplog.text

"""The hostile-input table: one row per hostile input, what the user sees, and a check that
produces it. tests/hostile_inputs/test_hostile_inputs.py runs every row; render.py turns the
table into docs/hostile-inputs.md (a test keeps that file current).

Adding a row: append a `Row` to the ROWS list of the area's `rows_<area>.py`. Adding an area:
write `rows_<area>.py` with a ROWS list and name it in AREAS. A row's `check(tmp_path)` does
what the user would do and returns the text the user sees (an error message, a process's
stderr); the test asserts that `sees` occurs in it.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from sg2_container.errors import UserError

AREAS = ("models", "dataset", "generate", "training")  # rows_<area>.py, in the order the doc lists them


@dataclasses.dataclass(frozen=True)
class Row:
    id: str  # unique, used as the test id
    case: str  # the hostile input, in words
    sees: str  # what the user sees (a fragment of the message that must occur in it)
    check: Callable  # check(tmp_path) -> the full text the user sees
    area: str = ""  # filled in from the module


def user_error(func, *args, **kwargs) -> str:
    """Calls func, which must raise a UserError; returns its message."""
    try:
        func(*args, **kwargs)
    except UserError as exc:
        return str(exc)
    raise AssertionError(f"{getattr(func, '__name__', func)} accepted the hostile input")


def all_rows() -> list[Row]:
    rows = []
    for area in AREAS:
        module = importlib.import_module(f"tests.hostile_inputs.rows_{area}")
        rows += [dataclasses.replace(row, area=area) for row in module.ROWS]
    ids = [row.id for row in rows]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate row ids: {sorted(duplicates)}"
    return rows

"""Every row of the hostile-input table gives the user what the table says; the doc is current."""
import pathlib

import pytest

from tests.hostile_inputs.render import render
from tests.hostile_inputs.table import all_rows

ROWS = all_rows()
DOC = pathlib.Path(__file__).parents[2] / "docs" / "hostile-inputs.md"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_hostile_input(row, tmp_path):
    seen = row.check(tmp_path)
    assert row.sees in seen, f"expected {row.sees!r} in what the user sees:\n{seen}"


def test_doc_is_current():
    assert DOC.read_text() == render(), (
        "docs/hostile-inputs.md is stale: run "
        "`python -m tests.hostile_inputs.render > docs/hostile-inputs.md`")

"""Writes docs/hostile-inputs.md from the table:
`python -m tests.hostile_inputs.render > docs/hostile-inputs.md`."""
from tests.hostile_inputs.table import all_rows

HEADER = """# Hostile inputs

Inputs that would otherwise run on nonsense, exhaust memory or lose work, and what the user sees
instead. Generated from `tests/hostile_inputs/` (each row is a test that produces the message);
do not edit by hand: add a row to `tests/hostile_inputs/rows_<area>.py`, then run
`python -m tests.hostile_inputs.render > docs/hostile-inputs.md`.
"""


def render() -> str:
    lines = [HEADER.rstrip("\n")]
    area = None
    for row in all_rows():
        if row.area != area:
            area = row.area
            lines += [f"## {area}", "", "| case | what the user sees |", "|---|---|"]
        sees = row.sees.replace("|", "\\|")
        lines.append(f"| {row.case} | `{sees}` |")
    text = []
    for line in lines:  # a blank line before each section heading
        if line.startswith("## ") and text and text[-1] != "":
            text.append("")
        text.append(line)
    return "\n".join(text) + "\n"


if __name__ == "__main__":
    print(render(), end="")

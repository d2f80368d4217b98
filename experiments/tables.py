"""Text tables for the terminal, in the two looks the project prints.

This module imports nothing heavy: ``python -m experiments.runs`` uses it.
"""


def table(rows: list[list[str]]) -> str:
    """Aligned text columns, two spaces apart, the first row a header over a rule of dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def summary_table(columns: list[tuple[str, list[str]]]) -> str:
    """Columns of text as a table under a header and a rule, separated by `` | ``, as
    Lightning's model summary prints them."""
    widths = [max([len(name), *(len(str(v)) for v in values)]) for name, values in columns]
    rows = [[name for name, _ in columns]]
    rows += [list(map(str, row)) for row in zip(*(values for _, values in columns), strict=True)]
    lines = [" | ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)) for row in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([lines[0], rule, *lines[1:], rule])

"""Output of the `worker` commands: readable tables by default, JSON (one document) with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from worker.jsonvalues import json_default

__all__ = ["cell", "print_json", "print_kv", "print_table"]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")


def cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S%z")
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=json_default)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, max_width: int = 60) -> None:
    """Aligned columns; 'no rows' when empty."""
    if not rows:
        print("(no rows)")
        return
    cells = [[cell(r.get(c), max_width) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_kv(data: Mapping[str, Any], keys: Sequence[str]) -> None:
    width = max(len(k) for k in keys)
    for key in keys:
        print(f"{key.ljust(width)}  {cell(data.get(key))}")

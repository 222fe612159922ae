"""Regenerate the README's configuration table from worker.settings (run after changing a setting).

    python scripts/settings_table.py          # rewrite README.md in place
    python scripts/settings_table.py --check  # exit 1 when the README is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from worker.settings import Settings, env_names

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def rows() -> list[str]:
    names = env_names()
    out = []
    for name, field in Settings.model_fields.items():
        if field.exclude:  # gathered from other variables (task_overrides: WORKER_TASK_<NAME>__<FIELD>)
            continue
        if name == "database_url":
            default = "required"
        elif name == "worker_id":
            default = "hostname-pid"
        elif field.default_factory is not None:
            default = "{}"
        elif field.default is None:
            default = "unset"
        else:
            default = str(field.default)
        desc = (field.description or "").replace("|", "\\|")
        out.append(f"| `{names[name]}` | `{default}` | {desc} |")
    return out


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + START + "\n" + "\n".join(rows()) + "\n" + END + tail


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

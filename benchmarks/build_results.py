"""Rebuild benchmarks/RESULTS.md from the per-area write-ups in benchmarks/results/*.md.

``results/summary.md`` (the title, the machine note and the table against every issue's targets)
comes first, then each area's file with its headings one level down, in the order below. Edit the
area files, never RESULTS.md itself.

Usage: python benchmarks/build_results.py
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
AREAS = ["knowledge", "nlu", "models", "hybrid", "web", "console", "reliability"]


def demote(text: str) -> str:
    """``# x`` -> ``## x`` outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" + line if not fenced and re.match(r"#+ ", line) else line)
    return "\n".join(out)


def main() -> None:
    parts = [(HERE / "results" / "summary.md").read_text(encoding="utf-8").rstrip()]
    for area in AREAS:
        path = HERE / "results" / f"{area}.md"
        if path.is_file():
            parts.append(demote(path.read_text(encoding="utf-8").strip()))
    (HERE / "RESULTS.md").write_text("\n\n---\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'} from {len(parts) - 1} area files")


if __name__ == "__main__":
    main()

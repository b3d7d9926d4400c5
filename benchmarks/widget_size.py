"""Widget script size: raw and gzip bytes of bot/web/static/widget.js (target <= 60 KB unminified).

Also checks the claim "no third-party dependencies, no CDN": the script loads nothing else.

Usage: .venv/bin/python benchmarks/widget_size.py
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDGET = REPO / "bot" / "web" / "static" / "widget.js"
OUT = REPO / "benchmarks" / "results" / "widget_size.json"
TARGET_BYTES = 60 * 1024


def main() -> dict:
    raw = WIDGET.read_bytes()
    text = raw.decode("utf-8")
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # the header comment shows an example URL
    external = sorted(set(re.findall(r"https?://[^\s\"')]+", code)) - {"http://www.w3.org/2000/svg"})
    loaders = [
        w
        for w in (
            "import(",
            "importScripts",
            'createElement("script")',
            "innerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        )
        if w in code
    ]
    result = {
        "file": str(WIDGET.relative_to(REPO)),
        "raw_bytes": len(raw),
        "gzip_bytes": len(gzip.compress(raw, compresslevel=9)),
        "lines": text.count("\n"),
        "target_bytes": TARGET_BYTES,
        "within_target": len(raw) <= TARGET_BYTES,
        "external_urls": external,
        "html_or_code_loading_apis": loaders,
    }
    print(f"{'metric':<28}{'value':>12}")
    print(f"{'raw size (bytes)':<28}{result['raw_bytes']:>12}")
    print(f"{'gzip size (bytes)':<28}{result['gzip_bytes']:>12}")
    print(f"{'target (bytes)':<28}{TARGET_BYTES:>12}")
    print(f"{'within target':<28}{str(result['within_target']):>12}")
    print(f"{'external URLs loaded':<28}{len(external):>12}")
    print(f"{'innerHTML/eval/import use':<28}{len(loaders):>12}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Print the exact size of Datafly.js: raw (bundled, unminified), minified and gzipped bytes.

Usage: python bench/collector_size.py   (raw needs node and collector/node_modules; the minified
and gzipped figures are measured on the committed src/datafly/gateway/static/d.js)
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "src" / "datafly" / "gateway" / "static" / "d.js"
GZIP_BUDGET = 5120


def raw_size() -> int | None:
    """Bytes of the unminified bundle, or None without node and esbuild."""
    if shutil.which("node") is None or not (ROOT / "collector" / "node_modules" / "esbuild").is_dir():
        return None
    result = subprocess.run(
        ["node", "scripts/size.mjs", "--json"],
        cwd=ROOT / "collector",
        capture_output=True,
        text=True,
        check=False,
    )
    if not result.stdout.strip():
        return None
    return int(json.loads(result.stdout.strip().splitlines()[-1])["raw"])


def main() -> None:
    minified = BUILT.read_bytes()
    gzipped = len(gzip.compress(minified, compresslevel=9, mtime=0))
    raw = raw_size()
    print(f"datafly.js raw      {raw if raw is not None else 'n/a (needs node)':>6} bytes")
    print(f"datafly.js minified {len(minified):>6} bytes")
    print(f"datafly.js gzipped  {gzipped:>6} bytes  (budget {GZIP_BUDGET}, {gzipped / GZIP_BUDGET:.0%} used)")


if __name__ == "__main__":
    main()

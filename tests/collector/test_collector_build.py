"""Datafly.js is built, not hand-edited: a fresh build equals the committed file, the collector's
own unit tests pass, and the file stays within its size budget."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "collector"
BUILT = ROOT / "src" / "datafly" / "gateway" / "static" / "d.js"
GZIP_BUDGET = 5120  # bytes: 5 KB gzipped, below the product's "under 8 KB"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=COLLECTOR, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    modules = COLLECTOR / "node_modules"
    if not (modules / "esbuild").is_dir():
        result = run("npm", "ci", "--no-audit", "--no-fund")
        assert result.returncode == 0, result.stdout + result.stderr
    return modules


def test_fresh_build_equals_committed_file(node_modules: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.js"
    result = run("node", "scripts/build.mjs", "--outfile", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == BUILT.read_bytes(), (
        "src/datafly/gateway/static/d.js differs from a fresh build: run `npm run build` in collector/"
    )


def test_collector_unit_tests() -> None:
    result = run("node", "--test", "test/")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_gzipped_size_within_budget() -> None:
    size = len(gzip.compress(BUILT.read_bytes(), compresslevel=9, mtime=0))
    assert size <= GZIP_BUDGET, f"d.js is {size} bytes gzipped, over the {GZIP_BUDGET}-byte budget"


def test_size_script_agrees(node_modules: Path) -> None:
    result = run("node", "scripts/size.mjs")
    assert result.returncode == 0, result.stdout + result.stderr

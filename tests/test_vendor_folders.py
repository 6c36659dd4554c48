"""A vendor is one folder (issue 15): what the rest of the platform knows of a vendor it derives
from the folder, so deleting the folder removes the vendor and leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datafly.destinations import docs
from datafly.destinations.registry import all_destinations

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
VENDORS = sorted(all_destinations())


def test_the_settings_reference_in_docs_is_generated_from_the_schemas() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == docs.with_reference(text), (
        "docs/config.md is out of date: run .venv/bin/python -m datafly.destinations.docs --write docs/config.md"
    )


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_vendor_folder_has_everything_a_vendor_needs(vendor: str) -> None:
    folder = SRC / "datafly" / "destinations" / vendor
    destination = all_destinations()[vendor]
    for name in ("__init__.py", "presets.yaml", "ui.yaml", "cases/format.json", "cases/batch.json", "cases/response.json"):
        assert (folder / name).is_file(), f"{vendor}: {name} is missing"
    guide = destination.guide()
    assert guide.summary and guide.mapping_label and guide.setup, f"{vendor}: ui.yaml needs summary, mapping_label, setup"
    assert "default" in destination.presets or destination.presets, f"{vendor}: no preset"


PROBE = """
import importlib, pkgutil, sys
import datafly
for info in pkgutil.walk_packages(datafly.__path__, "datafly."):
    importlib.import_module(info.name)
from datafly.destinations.registry import all_destinations
from datafly.destinations.docs import settings_reference
from datafly.management.catalog import vendors
gone = sys.argv[1]
assert gone not in all_destinations(), "still registered"
assert f"`{gone}`" not in settings_reference(), "still documented"
assert gone not in [v["vendor"] for v in vendors()], "still in the UI's library"
print("ok", len(all_destinations()))
"""


@pytest.mark.parametrize("vendor", VENDORS)
def test_deleting_a_vendor_folder_leaves_nothing_behind(vendor: str, tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.rmtree(copy / "datafly" / "destinations" / vendor)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, vendor],
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")

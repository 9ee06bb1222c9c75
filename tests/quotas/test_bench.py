"""bench/quotas.py: its peer does the same work as the core (same leaf amounts), and the script runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from quotas import allocation

ROOT = Path(__file__).resolve().parents[2]
# Loaded from its file under another name: "quotas" is the app.
_spec = importlib.util.spec_from_file_location("bench_quotas", ROOT / "bench" / "quotas.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_quotas"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def test_peer_gives_the_same_leaf_amounts_as_the_core():
    data = bench.hierarchy(64)
    ours = allocation.allocate(data, unit=100_000)
    peer = bench.allocate_python(data, unit=100_000)
    leaves = np.setdiff1d(np.arange(len(data.parent)), data.parent[data.parent >= 0])
    for leaf in leaves:
        for c in range(3):
            assert sum(peer["node_month"][(int(leaf), c)]) == ours.node_year[leaf, c]


def test_pure_cases_run_and_meet_the_target():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quotas.py"), "--skip-database", "--repeat", "1",
         "--territories", "200"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=300,
    ).stdout  # fmt: skip
    assert "allocation: potential" in out and "MISSES" not in out and "SUMS OFF" not in out

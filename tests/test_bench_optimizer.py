"""Smoke tests for bench/optimizer.py: instances are reproducible and the harness runs end to end.
No timing asserts: timings belong to the benchmark, not to CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import optimizer_instances as gen  # noqa: E402


def test_design_instances_are_deterministic():
    a = gen.design_instance(500, 5)
    b = gen.design_instance(500, 5)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.metrics, b.metrics)
    assert a.metrics.shape == (500, 3)
    assert (a.metrics > 0).all()
    assert (a.metrics[:, 2] == 1).all()
    assert not np.array_equal(a.points, gen.design_instance(500, 5, seed=2).points)


def test_drift_instance_is_deterministic_and_marks_new_accounts():
    base = gen.design_instance(1_000, 4)
    plan = np.arange(base.n) % base.k
    a = gen.drift_instance(base, plan)
    b = gen.drift_instance(base, plan)
    np.testing.assert_array_equal(a.metrics, b.metrics)
    np.testing.assert_array_equal(a.current, b.current)
    assert (a.current == -1).sum() == 50  # 5% new
    assert 900 < (a.current >= 0).sum() < 1_000  # ~3% churned


def test_zip_instance_is_deterministic_with_adjacency(tmp_path):
    a = gen.zip_instance(("RI",), k=3, n_accounts=2_000)
    b = gen.zip_instance(("RI",), k=3, n_accounts=2_000)
    np.testing.assert_array_equal(a.metrics, b.metrics)
    assert a.adjacency is not None and (a.adjacency != b.adjacency).nnz == 0
    assert (a.adjacency != a.adjacency.T).nnz == 0
    a.save(tmp_path / "i.npz")
    loaded = gen.Instance.load(tmp_path / "i.npz")
    assert loaded.name == a.name and (loaded.adjacency != a.adjacency).nnz == 0
    np.testing.assert_array_equal(loaded.points, a.points)


def test_harness_quick_run_prints_the_table():
    pytest.importorskip("sklearn", reason="the bench extra is not installed")
    pytest.importorskip("highspy", reason="the bench extra is not installed")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "optimizer.py"), "--quick", "--only", "small"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pass/miss" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("small 60 K=3")]
    solvers = {line.split()[3].rstrip(":") for line in lines}
    assert {"kmeans", "mip", "ours"} <= solvers

"""The solver's live state: assignment, loads, the objective's terms, progress and cancellation."""

from __future__ import annotations

import time

import numpy as np

from .checks import Prepared
from .problem import Problem, SolveCancelled


class Clock:
    """Progress reports, cancellation and the time limit, checked between iterations."""

    def __init__(self, problem: Problem) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + max(problem.time_limit, 0.0)
        self.progress = problem.progress
        self.should_stop = problem.should_stop
        self._last = -1.0

    def tick(self, percent: int, message: str) -> None:
        """Raise SolveCancelled if asked to stop; report progress at most ~5 times a second."""
        if self.should_stop is not None and self.should_stop():
            raise SolveCancelled(f"Stopped by request during: {message}.")
        now = time.perf_counter()
        if self.progress is not None and (now - self._last >= 0.2 or percent >= 100):
            self._last = now
            self.progress(int(min(max(percent, 0), 100)), message)

    def out_of_time(self) -> bool:
        return time.perf_counter() >= self.deadline


class StallGuard:
    """Stops a loop once its measure has not improved by `rel` (relative) for `rounds` rounds in a row:
    lumpy entities can make the last bit of a tolerance unreachable, and cycling does not help."""

    def __init__(self, rounds: int, rel: float) -> None:
        self.rounds = rounds
        self.rel = rel
        self.best = np.inf
        self.stalled = 0

    def stalled_after(self, value: float) -> bool:
        self.stalled = 0 if value < self.best * (1 - self.rel) else self.stalled + 1
        self.best = min(self.best, value)
        return self.stalled >= self.rounds


def excess_by_territory(dev: np.ndarray, prep: Prepared) -> np.ndarray:
    """(K,) the worst weighted amount by which each territory lies outside its tolerance (0 = inside)."""
    return (np.maximum(np.abs(dev) - prep.tol, 0.0) * prep.w).max(axis=1)


class State:
    """Live assignment, loads and the balance/distance/disruption terms of the objective."""

    def __init__(
        self, prep: Prepared, xyz: np.ndarray, centres: np.ndarray, labels: np.ndarray, margin: float
    ):
        self.prep = prep
        self.xyz = xyz
        self.centres = centres
        self.labels = labels
        self.loads = np.zeros((prep.k, prep.m))
        np.add.at(self.loads, labels, prep.x)
        safe = np.where(prep.targets > 0, prep.targets, 1.0)
        self.inv_t = np.where(prep.targets > 0, 1.0 / safe, 0.0)
        self.tau = prep.tol * margin
        # Scale so that one average entity moved out of a territory 1 point beyond the inner tolerance
        # gains about 1: distance (in mean entity-to-centre units) and disruption (in mean entity
        # sizes) are then on the same footing as balance.
        self.c_bal = 50.0 * prep.n / prep.k
        mean_x = prep.x.mean(axis=0)
        rel = np.divide(prep.x, mean_x, out=np.zeros_like(prep.x), where=mean_x > 0)
        self.size = (rel * prep.w).mean(axis=1)
        self.rel = rel
        self.reasons: dict[int, str] = {}
        self.movable_centres = False
        self.x_list: list[list[float]] = prep.x.tolist()
        self.inv_list: list[list[float]] = self.inv_t.tolist()
        self.tau_list: list[float] = self.tau.tolist()
        self.w_list: list[float] = prep.w.tolist()

    def penalty(self, dev: np.ndarray) -> np.ndarray:
        """Balance cost of relative deviations (..., M) → (...)."""
        excess = np.maximum(np.abs(dev) - self.tau, 0.0)
        return self.c_bal * (excess * excess * self.prep.w).sum(axis=-1)

    def scalar_gain(self, loads: list[list[float]], i: int, a: int, b: int) -> float:
        """Change of the balance cost if entity i moves from a to b, on plain floats.

        The greedy loop applies moves one at a time; numpy's per-call overhead on M-long rows made
        this the solver's hot spot, so it is written out for Python floats.
        """
        xi, la, lb, ia, ib = self.x_list[i], loads[a], loads[b], self.inv_list[a], self.inv_list[b]
        total = 0.0
        for j_m in range(self.prep.m):
            da = la[j_m] * ia[j_m] - 1.0
            db = lb[j_m] * ib[j_m] - 1.0
            t, step_a, step_b = self.tau_list[j_m], xi[j_m] * ia[j_m], xi[j_m] * ib[j_m]
            e0 = max(abs(da) - t, 0.0)
            e1 = max(abs(da - step_a) - t, 0.0)
            e2 = max(abs(db) - t, 0.0)
            e3 = max(abs(db + step_b) - t, 0.0)
            total += self.w_list[j_m] * (e1 * e1 - e0 * e0 + e3 * e3 - e2 * e2)
        return self.c_bal * total

    def move_lists(self, loads: list[list[float]], i: int, b: int) -> None:
        """Move entity i to b, updating the plain-float loads (sync with sync_loads)."""
        a = int(self.labels[i])
        xi, la, lb = self.x_list[i], loads[a], loads[b]
        for j_m in range(self.prep.m):
            la[j_m] -= xi[j_m]
            lb[j_m] += xi[j_m]
        self.labels[i] = b

    def deviation(self) -> np.ndarray:
        return self.loads * self.inv_t - 1.0

    def move(self, i: int, b: int) -> None:
        a = int(self.labels[i])
        self.loads[a] -= self.prep.x[i]
        self.loads[b] += self.prep.x[i]
        self.labels[i] = b


def reason(state: State, a: int, b: int, d_a: np.ndarray, d_b: np.ndarray) -> str:
    """Name the territory and metric that drove a move from a to b ("T7 revenue was 9% over target")."""
    names, tnames, w = state.prep.names, state.prep.territory_names, state.prep.w
    over = np.maximum(d_a - state.tau, 0.0) * w
    under = np.maximum(-d_b - state.tau, 0.0) * w
    if over.max() > 0 and over.max() >= under.max():
        j_m = int(np.argmax(over))
        return f"{tnames[a]} {names[j_m]} was {d_a[j_m]:.0%} over target"
    if under.max() > 0:
        j_m = int(np.argmax(under))
        return f"{tnames[b]} {names[j_m]} was {-d_b[j_m]:.0%} under target"
    return f"{tnames[b]} is closer than {tnames[a]}"

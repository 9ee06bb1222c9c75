"""Territory optimizer: pure numpy/scipy core, no Django. See problem.py for the contract."""

from .problem import InfeasibleProblem, Problem, Solution, SolveCancelled, SweepPoint
from .solver import solve, sweep

__all__ = ["InfeasibleProblem", "Problem", "Solution", "SolveCancelled", "SweepPoint", "solve", "sweep"]

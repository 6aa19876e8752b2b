"""Backtests: re-decide past (or generated) incidents under one or more policies, without side
effects (`simulation`); generated incidents (`generated`); the fast path for generated ones,
in two processes (`processes`, with `rules` the second process's entry point)."""

from services.decision.backtest.generated import generate_incidents
from services.decision.backtest.processes import backtest_generated
from services.decision.backtest.simulation import ArmTally, Tally, backtest

__all__ = ["ArmTally", "Tally", "backtest", "backtest_generated", "generate_incidents"]

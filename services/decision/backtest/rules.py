"""The second process of a backtest of generated incidents (`backtest_generated`): reads the
incidents' recipe and the policies from stdin, writes the draws with the rules that apply to
each onto stdout, in batches, then None."""

from __future__ import annotations

import pickle
import sys

from services.decision.backtest.processes import Sent, find_rules


def main() -> None:
    generated, policies = pickle.load(sys.stdin.buffer)  # noqa: S301 -- from our parent
    find_rules(Sent(sys.stdout.buffer), generated, policies)


if __name__ == "__main__":
    main()

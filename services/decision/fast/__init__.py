"""The decision engine's fast path: the decisions of `services.decision.domain.engine`, byte
for byte, sooner (a policy compiled once, what is often made kept and shared, contract models
built without validation). `tests/unit/decision/test_fast_engine.py` holds the two together."""

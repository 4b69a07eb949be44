"""How many times each jitted engine function was traced (= compiled for a new shape or method).

An evaluation should trace prefill/decode/select once per (shape bucket, method)
combination; a merging method (ToMe: its schedule is static in k), once per distinct budget.
"""

TRACES = {"prefill": 0, "decode": 0, "select": 0, "merge": 0}


def compile_count() -> dict[str, int]:
    """Traces so far per engine function (a copy)."""
    return dict(TRACES)

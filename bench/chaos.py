"""Chaos run (issue 9): seeded random faults against a real ``hivetray daemon``.

Injects ``--faults N`` faults (default 500) chosen by ``random.Random(--seed)`` from the
catalogue in ``tests/chaos`` — workers SIGKILLed/SIGSTOPped mid-stream and mid-load, crash
bursts, the app SIGKILLed with a frozen worker and relaunched, second launches, private
pools, 50 concurrent clients, disconnect storms, hostile and oversized socket input, damaged
model files, context overflows, non-images — and checks every invariant after each one.
Prints one JSON document: faults by kind, violations, the slowest recovery, maxima, total time,
seed. Exit status 1 when any invariant was violated. Replay a run with the same seed.

    python bench/chaos.py --faults 500 --seed 7
    python bench/chaos.py --faults 40 --seed 7 --kinds model_swap,client_storm
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the engine lives with the tests, so both run the same code
    sys.path.insert(0, str(REPO))

from _common import arg_parser, bench_home, emit, log  # noqa: E402


def main() -> int:
    parser = arg_parser(__doc__ or "chaos")
    parser.add_argument("--faults", type=int, default=500, help="faults to inject")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--kinds", default="", help="comma-separated fault kinds (default all)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    started = time.perf_counter()

    from tests.chaos.catalogue import FAULTS
    from tests.chaos.engine import ChaosRun
    from tests.chaos.harness import ChaosEnv, ChaosSettings

    kinds = [k for k in args.kinds.split(",") if k] or None
    unknown = sorted(set(kinds or ()) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault kinds {unknown}; known: {', '.join(FAULTS)}")
    log(f"chaos seed {seed}, {args.faults} faults")
    with bench_home("hvc-") as home:
        env = ChaosEnv(home.root / "c", ChaosSettings(), home=home.home, runtime=home.runtime)
        run = ChaosRun(env, seed, progress=log)
        try:
            run.start()
            run.run(args.faults, kinds)
        finally:
            run.close()
        report = run.report()
    emit("chaos", report, args.out, started)
    if report["violation_count"]:
        log(f"{report['violation_count']} violations; replay with --seed {seed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

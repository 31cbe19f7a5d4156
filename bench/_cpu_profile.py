"""Run a module under cProfile timed by the main thread's CPU time, not wall time (bench/fanout.py BENCH_PROFILE).

    python -m bench._cpu_profile OUT.prof [-m] MODULE [ARGS...]

On a shared machine wall time charges the time the process waited for a core to whatever function was
running; ``time.thread_time`` counts only the CPU the event loop's thread used (pulsar-client's own
threads are left out).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, rest = sys.argv[1], sys.argv[2:]
    if rest[:1] == ["-m"]:
        rest = rest[1:]
    module = rest[0]
    sys.argv = [module, *rest[1:]]
    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    main()

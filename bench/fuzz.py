"""Long fuzz run: >= 100,000 inputs per target, corpus-guided mutation vs plain random bytes.

    .venv/bin/python -m bench.fuzz [--inputs N] [--targets a,b] [--jobs N] [--seed N] [--json FILE] [--crash-dir DIR]

Targets and seeds are the ones the short hypothesis runs use (tests/test_fuzz_targets.py,
tests/fuzz_corpus/<target>/): the ingress framing parser, the chat moderator through the in-memory
Context, and the three YAML loaders. The broker's wire decoder has its own (tests/test_broker_fuzz.py).

For each target, in the same run:
  * mutation: N inputs made by 1-4 random edits of a corpus seed (bit flips, byte changes,
    inserts, deletes, splices of another seed, YAML/JSON tokens, truncation);
  * random (baseline): N/10 inputs of uniformly random bytes, what a fuzzer without a corpus feeds.
Figures: inputs/s (over all --jobs processes), the share of inputs the target *accepted* (got
past its first refusal: how deep the fuzzer reaches; the baseline's share shows what the corpus
buys), crashes (any exception other than the module's own error type, or a broken invariant)
and the slowest single input. An input running longer than --hang-seconds is a hang (SIGALRM),
counted with the crashes. "known" counts the crashes that are bugs already found and reported
(tests/fuzz_corpus/known_bugs/, the targets' TOLERATE_KNOWN_BUGS cases); they stay crashes unless
--tolerate-known. Each crashing input is written to --crash-dir to be replayed or added to the corpus.
Required: >= 100,000 inputs per target without a crash or a hang.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import test_fuzz_targets  # noqa: E402
from tests.test_fuzz_targets import TARGETS as TARGETS  # noqa: E402  # re-exported: the table the fuzz tests patch
from tests.test_fuzz_targets import corpus, mutate  # noqa: E402

TARGET_INPUTS = 100_000  # per target, without a crash or a hang


class Hang(Exception):
    pass


@dataclass
class RunFigures:
    inputs: int = 0
    accepted: int = 0
    crashes: int = 0
    known: int = 0  # of the crashes: bugs already reported (tests/fuzz_corpus/known_bugs/)
    hangs: int = 0
    seconds: float = 0.0
    slowest_ms: float = 0.0
    crash_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang()


def _is_known(target: Callable[[bytes], object], data: bytes) -> bool:
    """A crash the targets tolerate when told to: one of the bugs already reported."""
    saved = test_fuzz_targets.TOLERATE_KNOWN_BUGS
    test_fuzz_targets.TOLERATE_KNOWN_BUGS = True
    try:
        target(data)
        return True
    except Exception:
        return False
    finally:
        test_fuzz_targets.TOLERATE_KNOWN_BUGS = saved


def run_one(name: str, inputs: int, rng: random.Random, mode: str, hang_s: float, crash_dir: Path) -> RunFigures:
    target = TARGETS[name]
    seeds = corpus(name)
    figures = RunFigures()
    started = time.perf_counter()
    for i in range(inputs):
        data = mutate(rng, rng.choice(seeds), seeds) if mode == "mutation" else rng.randbytes(rng.randint(0, 512))
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            if target(data):
                figures.accepted += 1
        except Hang:
            figures.hangs += 1
            _save(crash_dir, name, mode, i, data, "hang")
        except Exception as exc:  # the point of fuzzing: anything escaping is a finding
            figures.crashes += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
            if _is_known(target, data):
                figures.known += 1
                kind += " (known, reported)"
            figures.crash_kinds[kind] = figures.crash_kinds.get(kind, 0) + 1
            if figures.crash_kinds[kind] <= 3:
                _save(crash_dir, name, mode, i, data, kind)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        figures.slowest_ms = max(figures.slowest_ms, (time.perf_counter() - t0) * 1000.0)
        figures.inputs += 1
    figures.seconds = time.perf_counter() - started
    return figures


def _job(task: tuple[str, int, int, str, float, Path]) -> RunFigures:
    name, count, seed, mode, hang_s, crash_dir = task
    signal.signal(signal.SIGALRM, _on_alarm)
    return run_one(name, count, random.Random(seed), mode, hang_s, crash_dir)


def run_parallel(name: str, count: int, seed: int, mode: str, hang_s: float, crash_dir: Path, jobs: int) -> RunFigures:
    """Split the inputs over `jobs` processes (fork: each keeps its own moderator instance)."""
    if jobs <= 1:
        return _job((name, count, seed, mode, hang_s, crash_dir))
    import multiprocessing

    shares = [count // jobs + (1 if i < count % jobs else 0) for i in range(jobs)]
    tasks = [(name, n, seed * 1000 + i, mode, hang_s, crash_dir) for i, n in enumerate(shares) if n]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(tasks)) as pool:
        parts = pool.map(_job, tasks)
    total = RunFigures(seconds=time.perf_counter() - started)
    for part in parts:
        total.inputs += part.inputs
        total.accepted += part.accepted
        total.crashes += part.crashes
        total.known += part.known
        total.hangs += part.hangs
        total.slowest_ms = max(total.slowest_ms, part.slowest_ms)
        for kind, n in part.crash_kinds.items():
            total.crash_kinds[kind] = total.crash_kinds.get(kind, 0) + n
    return total


def _save(crash_dir: Path, name: str, mode: str, index: int, data: bytes, kind: str) -> None:
    folder = crash_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{mode}-{index}.bin").write_bytes(data)
    with open(folder / "index.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{mode}-{index}.bin\t{kind}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--inputs", type=int, default=TARGET_INPUTS, help="mutated inputs per target (default %(default)s)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    parser.add_argument("--crash-dir", type=Path, default=Path("/tmp/wtpulsar-fuzz-crashes"))
    parser.add_argument("--tolerate-known", action="store_true",
                        help="let the already-reported bugs (tests/fuzz_corpus/known_bugs/) through, to hunt others")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes per target (default: CPUs)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    signal.signal(signal.SIGALRM, _on_alarm)
    tolerated = test_fuzz_targets.TOLERATE_KNOWN_BUGS
    test_fuzz_targets.TOLERATE_KNOWN_BUGS = args.tolerate_known  # forked workers inherit it
    try:
        return _run(args, names)
    finally:
        test_fuzz_targets.TOLERATE_KNOWN_BUGS = tolerated


def _run(args: argparse.Namespace, names: list[str]) -> int:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    print(f"{'target':<24} {'run':<18} {'inputs':>8} {'inputs/s':>9} {'accepted':>9} {'crashes':>7} {'known':>6} "
          f"{'hangs':>5} {'slowest ms':>10}")
    failed = False
    new_crashes = 0
    for name in names:
        for mode, count in (("mutation", args.inputs), ("random (baseline)", max(1, args.inputs // 10))):
            fig = run_parallel(name, count, args.seed, mode.split()[0], args.hang_seconds, args.crash_dir, args.jobs)
            results.setdefault(name, {})[mode.split()[0]] = {**asdict(fig), "rate": fig.rate}
            print(f"{name:<24} {mode:<18} {fig.inputs:>8} {fig.rate:>9.0f} {fig.accepted / fig.inputs:>8.1%} "
                  f"{fig.crashes:>7} {fig.known:>6} {fig.hangs:>5} {fig.slowest_ms:>10.1f}", flush=True)
            for kind, n in fig.crash_kinds.items():
                print(f"    crash x{n}: {kind}")
            failed |= bool(fig.crashes or fig.hangs)
            new_crashes += fig.crashes - fig.known
    total_ok = all(results[n]["mutation"]["inputs"] >= TARGET_INPUTS for n in names)
    print(f"target: >= {TARGET_INPUTS:,} inputs per target without crash or hang: "
          f"{'met' if total_ok and not failed else 'NOT met'}" + (f" (crashing inputs in {args.crash_dir})" if failed else ""))
    print(f"crashes not yet reported: {new_crashes} (known = already reported, see tests/fuzz_corpus/known_bugs/)")
    if args.json:
        Path(args.json).write_text(json.dumps({"targets": results, "target_inputs": TARGET_INPUTS}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: run every bench/*.py benchmark in turn and write bench/report.md with figures and plots.

    .venv/bin/python -m bench.run_all [--quick] [--only a,b] [--skip a,b] [--timeout S] [--out DIR]

Modules run one at a time (they would otherwise compete for the same cores and skew each other's
figures), each as `python -m bench.<name>` with the flags of a full run (FULL_ARGS; --quick uses
QUICK_ARGS, a smoke run). A module whose `--help` offers `--json FILE` also writes its figures as
JSON, from which bench/_report_plots.py draws PNGs; `--json` without a file means the JSON is
printed at the end of stdout. Every module's stdout+stderr is saved to <out>/<name>.log. A module
that exits non-zero, times out or cannot start is reported as failed at the top of the report, and
the others still run. Exit status: 1 if any module failed.

`--reuse a,b` takes those modules' figures from the last run saved in <out> instead of running
them again (each module's status, command and time are kept in <out>/<name>.status.json); the
report says so and when that run was. Meant for modules whose figures do not depend on the load
of the machine, such as fuzz (inputs and crashes), so that a long run need not be repeated.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._report_markdown import ModuleOutcome, render  # noqa: E402
from bench._report_plots import PLOTTERS  # noqa: E402

# Order of the report: the stage (broker, runtime) first, then the data path, then the issue-8 runs.
ORDER = ["broker", "localrun", "pipeline", "real_pulsar", "moderation", "ingress", "fanout", "late_join", "quic_stack", "publish_wait", "glass_to_glass",
         "fuzz", "sent_messages", "soak"]
FULL_ARGS: dict[str, list[str]] = {
    "broker": [], "localrun": [], "pipeline": [], "real_pulsar": [], "moderation": [], "ingress": [],
    "glass_to_glass": [], "fuzz": [], "sent_messages": [], "soak": [], "publish_wait": ["--pulsar"], "fanout": [], "late_join": [], "quic_stack": [],
}
QUICK_ARGS: dict[str, list[str]] = {
    "broker": ["--quick"],
    "localrun": ["--messages", "2000", "--latency-messages", "50", "--rounds", "1"],
    "pipeline": ["--quick"],
    "real_pulsar": ["--quick"],
    "moderation": ["--messages", "2000", "--users", "200"],
    "ingress": ["--seconds", "3", "--streams", "6"],
    "fanout": ["--quick"],
    "late_join": ["--quick"],
    "quic_stack": ["--quick"],
    "glass_to_glass": ["--seconds", "5", "--warmup", "2", "--variants", "localrun,batched"],
    "publish_wait": ["--messages", "100", "--burst", "5000"],
    "fuzz": ["--inputs", "2000"],
    "sent_messages": ["--messages", "3000", "--rate", "1500"],
    "soak": ["--minutes", "1", "--warmup", "20", "--sample", "5"],
}
DEFAULT_TIMEOUT_S = 3600.0


def discover() -> list[str]:
    """Every benchmark module: bench/*.py except helpers (_*.py), __init__ and this runner."""
    found = [p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all"]
    return [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)


def json_style(help_text: str) -> str | None:
    """"file" for `--json FILE`, "stdout" for a bare `--json` flag, None without one."""
    if re.search(r"--json\s+(FILE|JSON|PATH|JSON_FILE)\b", help_text):
        return "file"
    if re.search(r"--json\b", help_text):
        return "stdout"
    return None


def last_json_object(text: str) -> dict[str, Any] | None:
    """The JSON document a `--json` flag printed at the end of stdout (starts at a line "{")."""
    starts = [m.start() for m in re.finditer(r"(?m)^\{", text)]
    for start in reversed(starts):
        try:
            doc = json.loads(text[start:])
        except ValueError:
            continue
        return doc if isinstance(doc, dict) else None
    return None


def without_trailing_json(text: str) -> str:
    """Figures only: `text` without the JSON dump a `--json` flag printed at its end."""
    return text[: [m.start() for m in re.finditer(r"(?m)^\{", text)][-1]]


def run_module(name: str, extra: list[str], out_dir: Path, timeout: float) -> tuple[ModuleOutcome, dict[str, Any] | None]:
    base = [sys.executable, "-m", f"bench.{name}"]
    log_path = out_dir / f"{name}.log"
    try:
        help_text = subprocess.run(base + ["--help"], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        help_text = ""
        log_path.write_text(f"--help failed: {exc}\n")
    style = json_style(help_text)
    json_path = out_dir / f"{name}.json"
    args = list(extra)
    if style == "file":
        args += ["--json", str(json_path)]
    elif style == "stdout":
        args += ["--json"]
    command = base + args
    print(f"[bench] {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    except OSError as exc:
        status = f"could not start: {exc}"
    seconds = time.monotonic() - started
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    doc: dict[str, Any] | None = None
    if style == "file" and json_path.exists():
        try:
            doc = json.loads(json_path.read_text())
        except ValueError:
            doc = None
    elif style == "stdout":
        doc = last_json_object(text)
    shown = without_trailing_json(text) if style == "stdout" and doc is not None else text
    print(f"[bench] {name}: {status} in {seconds:.0f} s", flush=True)
    shown_command = ["python", "-m", f"bench.{name}", *args]
    (out_dir / f"{name}.status.json").write_text(json.dumps(
        {"status": status, "seconds": seconds, "command": shown_command, "finished": time.time(),
         "json": style is not None and doc is not None}))
    return ModuleOutcome(name, shown_command, status, seconds, f"{out_dir.name}/{log_path.name}", shown), doc


def reuse_module(name: str, out_dir: Path) -> tuple[ModuleOutcome, dict[str, Any] | None]:
    """The outcome of `name` saved by an earlier run in `out_dir` (see --reuse)."""
    status_path, log_path, json_path = (out_dir / f"{name}.status.json", out_dir / f"{name}.log",
                                        out_dir / f"{name}.json")
    try:
        saved = json.loads(status_path.read_text())
        text = log_path.read_text(errors="replace")
    except (OSError, ValueError) as exc:
        outcome = ModuleOutcome(name, ["python", "-m", f"bench.{name}"],
                                f"could not reuse: no saved run in {out_dir} ({exc})", 0.0, "", "")
        return outcome, None
    doc: dict[str, Any] | None = None
    if saved.get("json"):
        try:
            doc = json.loads(json_path.read_text()) if json_path.exists() else last_json_object(text)
        except ValueError:
            doc = None
    shown = without_trailing_json(text) if doc is not None and not json_path.exists() else text
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(saved.get("finished", 0)))
    print(f"[bench] {name}: reused the run finished {when}: {saved.get('status')}", flush=True)
    return ModuleOutcome(name, list(saved.get("command", [])), str(saved.get("status", "?")),
                         float(saved.get("seconds", 0.0)), f"{out_dir.name}/{log_path.name}", shown,
                         reused_from=when), doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="each module's smoke-run flags (minutes, not an hour)")
    parser.add_argument("--only", help="comma-separated modules to run")
    parser.add_argument("--skip", default="", help="comma-separated modules to leave out")
    parser.add_argument("--reuse", default="", help="comma-separated modules whose last saved run in --out is "
                                                    "reported instead of running them again")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per module, s (default %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="logs, JSON and PNGs")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "report.md")
    args = parser.parse_args(argv)
    modules = discover()
    if args.only:
        wanted = [m.strip() for m in args.only.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in modules]
        if unknown:
            parser.error(f"unknown module(s) {', '.join(unknown)}; found {', '.join(modules)}")
        modules = [m for m in modules if m in wanted]
    skip = {m.strip() for m in args.skip.split(",") if m.strip()}
    modules = [m for m in modules if m not in skip]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    outcomes = []
    table = QUICK_ARGS if args.quick else FULL_ARGS
    reuse = {m.strip() for m in args.reuse.split(",") if m.strip()}
    for name in modules:
        if name in reuse:
            outcome, doc = reuse_module(name, args.out)
        else:
            outcome, doc = run_module(name, table.get(name, []), args.out, args.timeout)
        plotter = PLOTTERS.get(name)
        if doc is not None and plotter is not None:
            try:
                pngs = plotter(doc, args.out)
                outcome.plots = [(title, f"{args.out.name}/{png}") for title, png in pngs]
            except Exception as exc:  # a plot must never hide the figures
                outcome.stdout_tail += f"\n(plot failed: {type(exc).__name__}: {exc})\n"
        outcomes.append(outcome)
        # Written after every module so an interrupted run still leaves a report.
        args.report.write_text(render(outcomes, started, args.quick))
    if args.report.parent != args.out.parent:
        print(f"[bench] note: plots live in {args.out}, linked relative to {args.report.parent}")
    print(f"[bench] report: {args.report}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

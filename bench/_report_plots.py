"""PNG plots for bench/report.md from the JSON the benchmark modules write (matplotlib, Agg).

One function per module whose JSON layout we know; each returns the (title, file name) pairs it
wrote. A module whose JSON is missing or shaped differently simply gets no plot: the report shows
its stdout figures either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.glass_to_glass import TARGETS as GLASS_TARGETS


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Path, name: str) -> str:
    path = out_dir / name
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path.name


def broker_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Throughput and latency per scenario: our broker against the pulsar-lite baseline."""
    plt = _pyplot()
    rows = doc.get("results") or []
    scenarios = list(dict.fromkeys(r["title"] for r in rows))
    brokers = list(dict.fromkeys(r["broker_label"] for r in rows))
    if not rows:
        return []
    out = []
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(brokers))
    for i, broker in enumerate(brokers):
        values = [next((r["msg_per_s"] for r in rows if r["title"] == s and r["broker_label"] == broker), 0) for s in scenarios]
        ax.bar([x + i * width for x in range(len(scenarios))], values, width, label=broker)
    ax.set_xticks([x + width * (len(brokers) - 1) / 2 for x in range(len(scenarios))], scenarios, rotation=15, fontsize=8)
    ax.set_ylabel("msg/s")
    ax.set_title("broker throughput per scenario")
    ax.legend()
    out.append(("Broker throughput (ours vs baseline)", _save(fig, out_dir, "broker_throughput.png")))
    lat = [r for r in rows if r.get("p50_ms") is not None]
    if lat:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['broker_label']}\n{r['title']}" for r in lat]
        ax.bar(labels, [r["p99_ms"] or 0 for r in lat], label="p99", color="#f4a261")
        ax.bar(labels, [r["p50_ms"] for r in lat], label="p50", color="#2a9d8f")
        ax.set_ylabel("ms")
        ax.set_title("broker send -> receive latency")
        ax.tick_params(axis="x", labelsize=7)
        ax.legend()
        out.append(("Broker latency p50/p99", _save(fig, out_dir, "broker_latency.png")))
    return out


def fuzz_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Inputs/s and accepted share per target: corpus mutation against random bytes (the baseline)."""
    plt = _pyplot()
    targets = doc.get("targets") or {}
    if not targets:
        return []
    names = list(targets)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for offset, mode, label in ((-0.2, "mutation", "corpus mutation"), (0.2, "random", "random bytes (baseline)")):
        xs = [i + offset for i in range(len(names))]
        left.bar(xs, [targets[n][mode]["rate"] for n in names], 0.4, label=label)
        right.bar(xs, [100 * targets[n][mode]["accepted"] / max(1, targets[n][mode]["inputs"]) for n in names], 0.4,
                  label=label)
    for ax, ylabel in ((left, "inputs/s"), (right, "% accepted (reached past first refusal)")):
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    left.set_yscale("log")
    return [("Fuzzing: speed and depth per target", _save(fig, out_dir, "fuzz_targets.png"))]


def soak_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    plt = _pyplot()
    out = []
    rss = doc.get("rss") or {}
    if rss:
        names = list(rss)
        fig, ax = plt.subplots(figsize=(8, 4))
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [(rss[n]["start_kib"] or 0) / 1024 for n in names], 0.4, label="after warm-up (baseline)")
        ax.bar([x + 0.2 for x in xs], [(rss[n]["end_kib"] or 0) / 1024 for n in names], 0.4, label="end")
        ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
        ax.set_ylabel("RSS MiB")
        ax.set_title(f"soak: RSS per process over {doc.get('minutes')} min (target growth < 10 %)")
        ax.legend()
        out.append(("Soak: RSS start vs end", _save(fig, out_dir, "soak_rss.png")))
    backlog, times = doc.get("backlog") or {}, doc.get("times") or []
    if backlog and times:
        fig, ax = plt.subplots(figsize=(8, 4))
        for sub, series in backlog.items():
            ax.plot(times[: len(series)], series, label=sub.replace("persistent://", ""))
        ax.set_xlabel("s")
        ax.set_ylabel("msgBacklog")
        ax.set_title("soak: backlog per subscription")
        ax.legend(fontsize=6)
        out.append(("Soak: backlog over time", _save(fig, out_dir, "soak_backlog.png")))
    hops = {h: v for h, v in (doc.get("hop_latency_ms") or {}).items() if v}
    if hops:
        fig, axes = plt.subplots(1, len(hops), figsize=(3 * len(hops), 3))
        for ax, (hop, values) in zip(axes if len(hops) > 1 else [axes], hops.items(), strict=True):
            ax.hist(values, bins=40)
            ax.set_title(hop, fontsize=9)
            ax.set_xlabel("ms", fontsize=8)
        fig.suptitle("soak: latency per hop (audit of the room topics)")
        out.append(("Soak: per-hop latency histograms", _save(fig, out_dir, "soak_hop_latency.png")))
    return out


def sent_messages_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """malloc'd memory against messages sent: public send_async (baseline) vs localrun's keeping."""
    plt = _pyplot()
    results = [r for r in doc.get("results") or [] if isinstance(r, dict) and r.get("samples")]
    if not results:
        return []
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        samples = r["samples"]
        label = f"{r['way']}, {'batched' if r['batched'] else 'unbatched'}"
        label += f", {r['rate']:.0f}/s" if r.get("rate") else ", unpaced"
        ax.plot([s[0] for s in samples], [(s[1] - samples[0][1]) / 1e6 for s in samples], label=label,
                linestyle="-" if r["way"] == "baseline" else "--")
    ax.set_xlabel("messages sent")
    ax.set_ylabel("malloc'd memory growth, MB")
    ax.set_title("one producer's memory: send_async vs localrun's SentMessages")
    ax.legend(fontsize=8)
    return [("Sent messages: memory against messages sent", _save(fig, out_dir, "sent_messages.png"))]


def glass_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Glass-to-glass latency per playback mode: histogram when samples are present, else p50/p95."""
    plt = _pyplot()
    results = [r for r in doc.get("results") or [] if isinstance(r, dict)]
    if not results:
        return []
    sampled = [(r["mode"], r[key]) for r in results for key in ("samples", "latencies", "latencies_ms")
               if isinstance(r.get(key), list) and r[key]]
    fig, ax = plt.subplots(figsize=(7, 4))
    if sampled:
        for mode, values in sampled:
            ax.hist(values, bins=40, alpha=0.6, label=mode)
        ax.set_xlabel("ms")
        ax.set_title("glass-to-glass latency")
    else:
        rows = [r for r in results if "p50" in r]
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["p50"] for r in rows], 0.4, color="#2a9d8f", label="p50")
        ax.bar([x + 0.2 for x in xs], [r["p95"] for r in rows], 0.4, color="#f4a261", label="p95")
        ax.set_xticks(list(xs), [f"{r.get('variant', '')}\n{r['mode']}".strip() for r in rows])
        ax.set_title("glass-to-glass latency per pipeline and playback mode")
        # The targets of bench/glass_to_glass.py (TARGETS), drawn over the rows they apply to.
        for x, row in zip(xs, rows, strict=True):
            p50_target, p95_target = GLASS_TARGETS.get(row["mode"], (None, None))
            if p50_target is not None:
                ax.hlines(p50_target, x - 0.4, x, colors="#1d6b62", linestyles="--")
            if p95_target is not None:
                ax.hlines(p95_target, x, x + 0.4, colors="#b5651d", linestyles=":")
        ax.plot([], [], ls="--", color="#1d6b62", label="p50 target")
        ax.plot([], [], ls=":", color="#b5651d", label="p95 target")
        ax.set_ylabel("ms")
    ax.legend()
    return [("Glass-to-glass latency", _save(fig, out_dir, "glass_to_glass.png"))]


def real_pulsar_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Ours against Apache Pulsar: broker msg/s per scenario (log scale) and pipeline latency per hop (p50)."""
    plt = _pyplot()
    systems = (("ours", "wtpulsar"), ("pulsar", f"Apache Pulsar {doc.get('pulsar_version', '')}".strip()))
    broker = doc.get("broker") or {}
    pipeline = doc.get("pipeline") or {}
    if not broker and not pipeline:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    titles = list(dict.fromkeys(r["title"] for rows in broker.values() for r in rows if r.get("rate") is None))
    for i, (key, label) in enumerate(systems):
        rows = {r["title"]: r for r in broker.get(key, [])}
        left.bar([x + (i - 0.5) * 0.4 for x in range(len(titles))],
                 [rows[t]["msg_per_s"] if t in rows else 0 for t in titles], 0.4, label=label)
    left.set_xticks(range(len(titles)), titles, fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("msg/s (log)")
    left.set_title("broker: produce -> consume")
    left.legend(fontsize=8)
    hops = [h for h in ("input_topic", "transcode", "chunk", "route", "output", "to_viewer")
            if any((pipeline.get(k) or {}).get("hops_ms", {}).get(h) for k, _ in systems)]
    names = [*hops, "end to end"]
    for i, (key, label) in enumerate(systems):
        run = pipeline.get(key) or {}
        values = [((run.get("hops_ms") or {}).get(h) or {}).get("p50", 0) for h in hops]
        values.append((run.get("end_to_end_ms") or {}).get("p50", 0))
        right.bar([x + (i - 0.5) * 0.4 for x in range(len(names))], values, 0.4, label=label)
    right.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    right.set_ylabel("p50 ms")
    right.set_title("pipeline: latency per hop (paced frames)")
    right.legend(fontsize=8)
    return [("Embedded broker + localrun vs Apache Pulsar", _save(fig, out_dir, "real_pulsar.png"))]


def fanout_plots(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Fan-out per transport against viewers: delivery p99 (with the 50 ms limit) and ingress CPU per frame."""
    plt = _pyplot()
    steps = doc.get("steps") or []
    if not steps:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for transport, color in zip(dict.fromkeys(s["transport"] for s in steps), ("#e76f51", "#2a9d8f", "#264653"),
                                strict=False):
        rows = [s for s in steps if s["transport"] == transport]
        xs = [s["viewers"] for s in rows]
        left.plot(xs, [s["p99_ms"] for s in rows], marker="o", color=color, label=f"{transport} p99")
        left.plot(xs, [s["p50_ms"] for s in rows], marker=".", ls=":", color=color, label=f"{transport} p50")
        right.plot(xs, [s["cpu_us_per_frame"] for s in rows], marker="o", color=color, label=transport)
    left.axhline(doc.get("p99_limit_ms", 50.0), ls="--", color="grey", label="p99 limit")
    left.set_xlabel("viewers on one ingress process")
    left.set_ylabel("ms, route output -> viewer")
    left.set_yscale("log")
    left.set_title("delivery latency")
    left.legend(fontsize=8)
    right.set_xlabel("viewers on one ingress process")
    right.set_ylabel("us of ingress CPU per delivered record")
    right.set_title("egress CPU per delivered frame")
    right.legend(fontsize=8)
    return [("Fan-out: latency and CPU per delivered frame against viewers", _save(fig, out_dir, "fanout.png"))]


PLOTTERS = {"fanout": fanout_plots, "broker": broker_plots, "fuzz": fuzz_plots, "soak": soak_plots, "glass_to_glass": glass_plots,
            "sent_messages": sent_messages_plots, "real_pulsar": real_pulsar_plots}

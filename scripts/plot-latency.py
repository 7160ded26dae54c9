#!/usr/bin/env python3
"""Draws latency distributions (the benchmark driver's `--latency-csv` files) as a PNG.

    scripts/plot-latency.py OUT.png LABEL=FILE.csv [LABEL=FILE.csv ...] [--series all|after_warmup]

Each CSV holds `series,percentile,latency_us` rows. The chart puts the percentile on a log scale of
1 / (1 - p) (50, 90, 99, 99.9, 99.99 ... evenly spaced, as HdrHistogram plots do) and the latency
on a log scale, with the targets of docs/benchmarks.md marked. matplotlib is installed for the
user if it is missing.
"""
import csv
import subprocess
import sys


def need_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--user", "matplotlib"]
        if subprocess.call(pip) != 0:
            # A distribution's externally managed Python (PEP 668) refuses --user installs
            # unless told that it may.
            subprocess.check_call(pip + ["--break-system-packages"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read(path, series):
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["series"] == series:
                points.append((float(row["percentile"]), float(row["latency_us"])))
    return points


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, args = argv[1], argv[2:]
    series = "all"
    if "--series" in args:
        i = args.index("--series")
        series = args[i + 1]
        del args[i : i + 2]
    plt = need_matplotlib()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    ticks = [50, 90, 99, 99.9, 99.99, 99.999]
    for arg in args:
        label, _, path = arg.partition("=")
        points = [(p, v) for p, v in read(path, series) if p < 100]
        if not points:
            continue
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in points]
        ax.plot(xs, [v for _, v in points], label=label, linewidth=1.6)
    for (p, us, what) in [(99, 20, "p99 <= 20 us (100 K/s)"), (99.9, 100, "p99.9 <= 100 us (100 K/s)"),
                          (99, 50, "p99 <= 50 us (half load)"), (99.9, 200, "p99.9 <= 200 us (half load)")]:
        ax.plot([1.0 / (1.0 - p / 100.0)], [us], marker="v", color="grey", linestyle="none")
        ax.annotate(what, (1.0 / (1.0 - p / 100.0), us), textcoords="offset points", xytext=(6, -3),
                    fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks])
    ax.set_xticklabels([f"p{t:g}" for t in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency, source emit to sink receipt (us)")
    ax.set_title(f"heartbeat latency distribution ({series.replace('_', ' ')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

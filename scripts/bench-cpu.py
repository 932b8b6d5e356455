#!/usr/bin/env python3
"""One line per run of a results folder of ../shared/bench (compare or scripts/bench-ab).

For each run: delivered/s, latency percentiles, each process's CPU % over the publishing
window, and the same CPU as µs per delivered event (instances, Redis, generator), from the
harness's loadgen.out and summary.json.

Usage: scripts/bench-cpu.py RESULTS_DIR
"""
import json
import os
import sys


def main(root: str) -> None:
    for label in sorted(os.listdir(root)):
        run = os.path.join(root, label)
        if not os.path.isdir(run):
            continue
        try:
            with open(os.path.join(run, "loadgen.out")) as f:
                load = json.loads(f.readline())
            with open(os.path.join(run, "summary.json")) as f:
                summary = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            print(f"{label:22s} unreadable: {e}")
            continue
        rate = load.get("delivered_per_s") or 0
        cpu = {k: v.get("cpu_pct") or 0 for k, v in summary.get("procs", {}).items()}
        inst = cpu.get("inst0", 0) + cpu.get("inst1", 0)
        redis, gen = cpu.get("redis", 0), cpu.get("loadgen", 0)

        def per_event(pct: float) -> float:
            return pct * 1e4 / rate if rate else 0.0

        lat = load["lat_ms"]
        print(
            f"{label:22s} rate={rate:8.0f} p50={lat['p50']:.2f} p99={lat['p99']:.2f} "
            f"p999={lat['p999']:.2f} cpu% inst={inst:.1f} redis={redis:.1f} gen={gen:.1f} | "
            f"us/ev inst={per_event(inst):.1f} redis={per_event(redis):.1f} "
            f"gen={per_event(gen):.1f} lost={load.get('lost')} dup={load.get('dup')}"
        )


if __name__ == "__main__":
    main(sys.argv[1])

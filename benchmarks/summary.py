"""`python -m benchmarks.summary DIR`: one short table from the JSON reports the harness wrote."""
import glob
import json
import os
import sys


def summarize(folder):
    lines = [f"{'suite':10s} {'case':38s} {'ours ms':>9s} {'vendor ms':>10s} {'speed':>6s} {'% ceil':>7s}"]
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as handle:
            report = json.load(handle)
        if "rows" not in report:
            continue
        for row in report["rows"]:
            if "error" in row:
                lines.append(f"{report['suite']:10s} {row['case'][:38]:38s} FAILED {row['error'][:60]}")
                continue
            speed = f"{row['speed_vs_vendor']:.2f}" if row.get("speed_vs_vendor") else "-"
            vendor = f"{row['vendor_ms']:.3f}" if row.get("vendor_ms") else "-"
            ceiling = f"{row['pct_of_ceiling']:.1f}" if row.get("pct_of_ceiling") is not None else "-"
            lines.append(f"{report['suite']:10s} {row['case'][:38]:38s} {row['ours_ms']:9.3f} {vendor:>10s} "
                         f"{speed:>6s} {ceiling:>7s}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "bench-results"))

"""`python -m benchmarks.summary DIR [SUITE...]`: one short table from the JSON reports the harness wrote. A
report the harness had not finished (its suite cut by a time cap) ends with a CUT line; a SUITE named with no
report at all gets a line saying so."""
import glob
import json
import os
import sys


def summarize(folder, suites=()):
    lines = [f"{'suite':10s} {'case':38s} {'ours ms':>9s} {'vendor ms':>10s} {'speed':>6s} {'% ceil':>7s}"]
    reported = set()
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as handle:
            report = json.load(handle)
        if "rows" not in report:
            continue
        reported.add(report["suite"])
        for row in report["rows"]:
            if "error" in row:
                lines.append(f"{report['suite']:10s} {row['case'][:38]:38s} FAILED {row['error'][:60]}")
                continue
            speed = f"{row['speed_vs_vendor']:.2f}" if row.get("speed_vs_vendor") else "-"
            vendor = f"{row['vendor_ms']:.3f}" if row.get("vendor_ms") else "-"
            ceiling = f"{row['pct_of_ceiling']:.1f}" if row.get("pct_of_ceiling") is not None else "-"
            lines.append(f"{report['suite']:10s} {row['case'][:38]:38s} {row['ours_ms']:9.3f} {vendor:>10s} "
                         f"{speed:>6s} {ceiling:>7s}")
        if report.get("complete") is False:   # (reports from before the flag are whole)
            lines.append(f"{report['suite']:10s} CUT after {len(report['rows'])} rows: the suite did not finish")
    for suite in suites:
        if suite not in reported:
            lines.append(f"{suite:10s} CUT: no report (stopped before its first row, skipped, or no case matched)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "bench-results", sys.argv[2:]))

#!/usr/bin/env python3
"""The soak's report and verdict (run by benches/soak.sh at the end).

Reads OUT/samples.csv, events.log, errors.log, windows.json, totals.json and
run.txt; writes OUT/report.md (totals, one row per minute, one row per weir
process, the verdict) and OUT/soak.png (gnuplot, when installed); prints the
report and exits 0 when the verdict passes, 1 otherwise.

Verdict (documented in README.md, "Soak"):
  - errors: 0 outside the restarting backend's windows (SIGKILL to 3 s after it
    listens again); errors inside them are listed apart (the clients send only
    GETs, which weir retries on the other backend, so they are expected to be 0
    too, but they do not fail the verdict);
  - operations: every reload and upgrade succeeded;
  - RSS flat: the highest RSS of the last third of the run is at most 25% above
    the highest of the baseline window (2 to 5 minutes in a 30-minute run: from
    1/15 to 1/6 of the duration, after warm-up);
  - fds flat: the highest open-fd count of the last third is at most 16 above the
    baseline window's highest.
"""

import collections
import csv
import json
import os
import re
import shutil
import subprocess
import sys

KINDS = ["h1_keepalive", "h1_newconn", "h2_tls", "ws", "slow"]
RSS_SLACK = 1.25
FD_SLACK = 16


def load(out):
    with open(os.path.join(out, "samples.csv")) as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    errors = []
    if os.path.exists(os.path.join(out, "errors.log")):
        with open(os.path.join(out, "errors.log")) as f:
            errors = [line.rstrip("\n").split("\t", 3) for line in f if line.strip()]
    with open(os.path.join(out, "windows.json")) as f:
        windows = json.load(f)
    with open(os.path.join(out, "events.log")) as f:
        events = [line.rstrip("\n") for line in f]
    try:
        with open(os.path.join(out, "totals.json")) as f:
            totals = json.load(f)
    except OSError:  # a run that was cut short: the last sample's counters
        last = rows[-1]
        totals = {key: {k: int(last[f"{k}_{col}"]) for k in KINDS}
                  for key, col in [("ok", "ok"), ("err", "err"), ("retried", "retried")]}
        totals.update(start=rows[0]["ts"], end=last["ts"], cut_short=True,
                      op_failures=sum(1 for e in events if "\tFAIL " in e))
    return rows, errors, windows, totals, events


def in_window(ts, windows):
    return any(a <= ts <= b for a, b in windows)


def minute_table(rows):
    lines = ["| min | weir pid | RSS MiB | fds | threads | "
             + " | ".join(f"{k} req/s" for k in KINDS) + " | errors |",
             "| ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in KINDS) + " | ---: |"]
    prev = rows[0]
    next_min = 1
    for r in rows[1:]:
        if r["elapsed_s"] + 0.5 < 60 * next_min and r is not rows[-1]:
            continue
        dt = max(1.0, r["elapsed_s"] - prev["elapsed_s"])
        rates = [f"{(r[k + '_ok'] - prev[k + '_ok']) / dt:.0f}" for k in KINDS]
        errs = int(sum(r[k + "_err"] - prev[k + "_err"] for k in KINDS))
        lines.append(f"| {r['elapsed_s'] / 60:.1f} | {int(r['pid'])} | {r['rss_kib'] / 1024:.1f} | "
                     f"{int(r['fds'])} | {int(r['threads'])} | " + " | ".join(rates) + f" | {errs} |")
        prev = r
        next_min = int(r["elapsed_s"] // 60) + 1
    return lines


def process_table(rows):
    lines = ["| weir pid | from min | to min | RSS MiB first / last / max | fds first / last / max |",
             "| ---: | ---: | ---: | --- | --- |"]
    by_pid = {}
    for r in rows:
        if r["pid"] > 0 and r["rss_kib"] > 0:
            by_pid.setdefault(int(r["pid"]), []).append(r)
    for pid, rs in by_pid.items():
        rss = [r["rss_kib"] / 1024 for r in rs]
        fds = [int(r["fds"]) for r in rs]
        lines.append(f"| {pid} | {rs[0]['elapsed_s'] / 60:.1f} | {rs[-1]['elapsed_s'] / 60:.1f} | "
                     f"{rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f} | {fds[0]} / {fds[-1]} / {max(fds)} |")
    return lines


def flatness(rows, duration):
    base = [r for r in rows if duration / 15 <= r["elapsed_s"] <= duration / 6 and r["rss_kib"] > 0]
    tail = [r for r in rows if r["elapsed_s"] >= duration * 2 / 3 and r["rss_kib"] > 0]
    if not base or not tail:
        return False, "too few samples to judge"
    b_rss, t_rss = max(r["rss_kib"] for r in base), max(r["rss_kib"] for r in tail)
    b_fd, t_fd = max(r["fds"] for r in base), max(r["fds"] for r in tail)
    rss_ok = t_rss <= b_rss * RSS_SLACK
    fd_ok = t_fd <= b_fd + FD_SLACK
    text = (f"RSS: last third max {t_rss / 1024:.1f} MiB vs baseline max {b_rss / 1024:.1f} MiB "
            f"({(t_rss / b_rss - 1) * 100:+.0f}%, limit +{(RSS_SLACK - 1) * 100:.0f}%): "
            f"{'flat' if rss_ok else 'GROWS'}; fds: last third max {int(t_fd)} vs baseline max "
            f"{int(b_fd)} (limit +{FD_SLACK}): {'flat' if fd_ok else 'GROWS'}")
    return rss_ok and fd_ok, text


def weir_log(out):
    """Counts of weir's own ERROR and WARN lines (all processes of the run)."""
    path = os.path.join(out, "weir-error.log")
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        lines = [line.rstrip("\n") for line in f]
    errors = [line for line in lines if " ERROR " in line]
    warns = [line for line in lines if " WARN " in line]
    kinds = collections.Counter(re.sub(r"^\[\S+ +WARN +([^]]*)\] *", r"\1: ", w)[:80] for w in warns)
    md = ["", f"weir's process log: {len(errors)} ERROR and {len(warns)} WARN lines."]
    if kinds:
        md += ["", "| WARN lines | starting with |", "| ---: | --- |"]
        md += [f"| {n} | `{k.replace('|', '/')}` |" for k, n in kinds.most_common(6)]
    if errors:
        md += ["", "First ERROR lines:", "", "```"] + [line[:300] for line in errors[:10]] + ["```"]
    return md


def plot(out, rows):
    if not shutil.which("gnuplot"):
        return False
    data = os.path.join(out, "plot.dat")
    with open(data, "w") as f:
        for r in rows:
            if r["rss_kib"] > 0:
                f.write(f"{r['elapsed_s'] / 60:.2f} {r['rss_kib'] / 1024:.2f} {int(r['fds'])}\n")
    script = f"""
set terminal pngcairo size 900,420 noenhanced
set output '{os.path.join(out, "soak.png")}'
set xlabel 'minutes'
set ylabel 'RSS (MiB)'
set y2label 'open fds'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
set grid
set title 'weir soak: RSS and open fds of the current process (new pid after each upgrade)'
plot '{data}' using 1:2 with lines lw 2 title 'RSS MiB', '{data}' using 1:3 axes x1y2 with lines lw 2 title 'open fds'
"""
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True, timeout=60,
                       stderr=subprocess.PIPE)
    except (subprocess.SubprocessError, OSError):
        try:
            subprocess.run(["gnuplot"], input=script.replace("pngcairo", "png").encode(),
                           check=True, timeout=60, stderr=subprocess.PIPE)
        except (subprocess.SubprocessError, OSError):
            return False
    os.remove(data)
    return True


def main(out):
    rows, errors, windows, totals, events = load(out)
    duration = totals["end"] - totals["start"]
    inside = [e for e in errors if in_window(float(e[0]), windows)]
    outside = [e for e in errors if not in_window(float(e[0]), windows)]
    flat_ok, flat_text = flatness(rows, duration)
    ops = [e for e in events if "\treload" in e or "\tupgrade" in e or "FAIL" in e]
    op_fail = totals["op_failures"]
    verdict = not outside and op_fail == 0 and flat_ok
    run = open(os.path.join(out, "run.txt")).read().strip() if os.path.exists(
        os.path.join(out, "run.txt")) else ""
    cut = ["", "**This run was cut short** (see run.txt); the numbers stop at its last sample.", ""] \
        if totals.get("cut_short") else [""]
    md = ["# weir soak", "", "```", run, "```"] + cut + [
          f"Duration {duration / 60:.1f} min; {sum(totals['ok'].values())} requests/messages answered; "
          f"{len(ops)} reloads+upgrades ({op_fail} failed); "
          f"{len(windows)} backend restarts.", "",
          "| client kind | ok | errors | of which in a backend restart window | retried (not errors) |",
          "| --- | ---: | ---: | ---: | ---: |"]
    for k in KINDS:
        n_in = sum(1 for e in inside if e[2] == k)
        md.append(f"| {k} | {totals['ok'][k]} | {totals['err'][k]} | {n_in} | {totals['retried'][k]} |")
    md += ["", "Per minute (rates over the minute; RSS/fds of the current weir process at that time):", ""]
    md += minute_table(rows)
    md += ["", "Per weir process (each `weir upgrade` starts a new one):", ""]
    md += process_table(rows)
    md += ["", f"**Verdict: {'PASS' if verdict else 'FAIL'}** — errors outside backend restarts: "
           f"{len(outside)}; in restart windows: {len(inside)}; failed operations: {op_fail}; {flat_text}."]
    if errors:
        md += ["", "Errors (first 40; time since start in s):", "", "```"]
        md += [f"{e[1]}s {'[restart window] ' if e in inside else ''}{e[2]}: {e[3]}" for e in errors[:40]]
        md += ["```"]
    failed_ops = [e for e in events if "FAIL" in e]
    if failed_ops:
        md += ["", "Failed operations:", "", "```"] + failed_ops[:20] + ["```"]
    md += weir_log(out)
    if plot(out, rows):
        md += ["", "![RSS and fds](soak.png)"]
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

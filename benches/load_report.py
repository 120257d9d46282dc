#!/usr/bin/env python3
"""benches/load_report.py TSV MD: the tables of benches/load.sh.

Reads the raw rows benches/load.sh wrote (TSV, one row per proxy, test and
round), writes the medians as Markdown to MD and prints them. The run's
metadata comes from LR_* environment variables (load.sh sets them; all are
optional, so the tables can be made again from a TSV alone):

LR_DATE LR_MACHINE LR_COMMAND LR_COMMIT LR_VERSIONS LR_ELAPSED: header lines;
LR_HTTP_ORDER, LR_TLS_ORDER: the proxies in table order; LR_DURATION
LR_CONNS LR_PACED_CONNS LR_PACED_DELAY_MS LR_IDLE_CONNS LR_HS_CONNS
LR_H2_CONNS LR_H2_STREAMS: the settings, for the descriptions; LR_PINGAP_NOTE:
why pingap was skipped, if it was.
"""
import csv
import os
import statistics
import sys

tsv, md = sys.argv[1], sys.argv[2]
env = os.environ.get
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
for r in rows:  # TSVs from before the TLS rows have no test column
    r.setdefault("test", "http")
    if not r.get("test"):
        r["test"] = "http"


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


NAMES = {
    "weir": "weir",
    "weir-policy": "weir + policies",
    "floor": "floor_proxy (bare Pingora)",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "pingap": "pingap",
    "pingap-weir": "pingap doing weir's work",
    "direct": "direct to origin",
}
name = lambda p: NAMES.get(p, p)
NUMERIC = [k for k in (rows[0].keys() if rows else []) if k not in ("round", "proxy", "test", "tls")]


def medians(test):
    """{proxy: {column: median over rounds}} for one test."""
    out = {}
    for p in {r["proxy"] for r in rows if r["test"] == test}:
        sel = [r for r in rows if r["test"] == test and r["proxy"] == p]
        out[p] = {k: statistics.median(num(r[k]) for r in sel) for k in NUMERIC}
    return out


def ordered(present, order_env, default):
    order = (env(order_env) or default).split()
    return [p for p in order if p in present] + sorted(p for p in present if p not in order)


def with_ratio(v, base, fmt, scale):
    s = fmt.format(v * scale)
    if base:
        s += " ({:.2f}×)".format(v / base)
    return s


def ratio_line(label, a, b, keys):
    """"label: name a/b, ..." for the columns present in both."""
    parts = []
    for key, title in keys:
        if key in a and key in b and b[key]:
            parts.append("%s %.2f×" % (title, a[key] / b[key]))
    return "%s: %s" % (label, ", ".join(parts)) if parts else ""


rounds = len({r["round"] for r in rows})
out = ["# weir load benchmark (benches/load.sh)\n"]
for label, key in (("date", "LR_DATE"), ("machine", "LR_MACHINE")):
    if env(key):
        out.append("- %s: %s" % (label, env(key)))
if env("LR_COMMAND"):
    out.append("- command: `%s`" % env("LR_COMMAND"))
if env("LR_COMMIT"):
    out.append("- weir commit: %s; %s; run time %s s" % (env("LR_COMMIT"), env("LR_VERSIONS", ""), env("LR_ELAPSED", "?")))
out.append("- each proxy: 1 worker thread on core 0; the load generator and the origin (nginx, return 200 \"ok\") on core 1; keep-alive to the origin everywhere")
out.append("- medians of %d round(s); (×) = ratio to nginx (for req/s and handshakes/s higher is better, for the rest lower is better)" % rounds)
pingap_note = env("LR_PINGAP_NOTE", "")

# ------------------------------------------------------------------ plain HTTP
med = medians("http")
if med:
    D, C, PC, PD, IC = (env("LR_DURATION", "5"), env("LR_CONNS", "50"), env("LR_PACED_CONNS", "20"),
                        env("LR_PACED_DELAY_MS", "2"), env("LR_IDLE_CONNS", "1000"))
    order = ordered(med, "LR_HTTP_ORDER", "weir weir-policy floor nginx haproxy pingap pingap-weir direct")
    paced = [med[p]["paced_rps"] for p in order if p != "direct"]
    out.append("- @max: wrk -t1 -c%s, %s s; @paced: wrk -t1 -c%s with a %s ms delay between requests per connection (≈%s req/s; wrk2/oha are not in Debian); CPU = utime+stime of the proxy process / requests served (µs per request = ms per 1,000 requests)"
               % (C, D, PC, PD, format(round(statistics.median(paced)) if paced else 0, ",")))
    out.append("- KiB/idle conn: (VmRSS with %s idle keep-alive clients that each made one request − VmRSS before) / %s, fresh process; RSS idle = that VmRSS before; peak RSS = VmHWM after the load runs" % (IC, IC))
    if "weir-policy" in med:
        out.append("- weir + policies: the weir route plus rate_limit (local, key header:x-api-key, 10^9/s: never reached), auth.api_keys (wrk sends the key in x-api-key) and request_headers.set; its idle-connection memory is weir's")
    if "pingap-weir" in med:
        out.append("- pingap doing weir's work: pingap configured to do what weir does by default (X-Forwarded-For/Proto/Host with `enable_reverse_proxy_headers`, which adds X-Real-IP and X-Forwarded-Port too; X-Request-Id upstream and on the answer with its request_id plugin; upstream timeouts connect 5 s, read/write/idle 60 s); its idle-connection memory is pingap's")
    out.append("")
    cols = [  # key, header, format, scale
        ("rps", "req/s", "{:,.0f}", 1),
        ("p50_us", "p50 ms", "{:.3f}", 1e-3),
        ("p99_us", "p99 ms", "{:.3f}", 1e-3),
        ("cpu_us_per_req_max", "CPU µs/req @max", "{:.1f}", 1),
        ("cpu_pct_max", "proxy CPU % @max", "{:.0f}", 1),
        ("paced_p50_us", "p50 ms @paced", "{:.3f}", 1e-3),
        ("paced_p99_us", "p99 ms @paced", "{:.3f}", 1e-3),
        ("cpu_us_per_req_paced", "CPU µs/req @paced", "{:.1f}", 1),
        ("kib_per_idle_conn", "KiB/idle conn", "{:.1f}", 1),
        ("rss_base_kib", "RSS idle MiB", "{:.1f}", 1 / 1024),
        ("rss_peak_kib", "peak RSS MiB", "{:.1f}", 1 / 1024),
    ]
    proxy_only = {"cpu_us_per_req_max", "cpu_pct_max", "paced_p50_us", "paced_p99_us", "cpu_us_per_req_paced",
                  "kib_per_idle_conn", "rss_base_kib", "rss_peak_kib"}
    idle_cols = {"kib_per_idle_conn", "rss_base_kib"}

    def cell(p, key, fmt, scale):
        if (p == "direct" and key in proxy_only) or (p in ("weir-policy", "pingap-weir") and key in idle_cols):
            return "–"
        base = med["nginx"][key] if p != "nginx" and key != "cpu_pct_max" and "nginx" in med else 0
        return with_ratio(med[p][key], base, fmt, scale)

    out.append("| proxy | " + " | ".join(c[1] for c in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))
    for p in order:
        out.append("| %s | " % name(p) + " | ".join(cell(p, c[0], c[2], c[3]) for c in cols) + " |")
    keys = [("rps", "req/s"), ("p50_us", "p50"), ("p99_us", "p99"), ("cpu_us_per_req_max", "CPU/req @max"),
            ("cpu_us_per_req_paced", "CPU/req @paced"), ("paced_p99_us", "p99 @paced"),
            ("kib_per_idle_conn", "KiB/idle conn"), ("rss_peak_kib", "peak RSS")]
    for other in ("floor", "pingap", "pingap-weir"):
        if "weir" in med and other in med:
            label = "weir / " + (name(other) if other == "pingap-weir" else name(other).split(" ")[0])
            out.append("\n" + ratio_line(label, med["weir"], med[other], keys))
    if "weir" in med and "weir-policy" in med:
        w, g = med["weir"], med["weir-policy"]
        out.append("\nweir + policies / weir: req/s %.2f×, CPU/req @max %.2f× (%+.1f µs), CPU/req @paced %.2f× (%+.1f µs), p99 @paced %.2f×" % (
            g["rps"] / w["rps"] if w["rps"] else 0,
            g["cpu_us_per_req_max"] / w["cpu_us_per_req_max"] if w["cpu_us_per_req_max"] else 0,
            g["cpu_us_per_req_max"] - w["cpu_us_per_req_max"],
            g["cpu_us_per_req_paced"] / w["cpu_us_per_req_paced"] if w["cpu_us_per_req_paced"] else 0,
            g["cpu_us_per_req_paced"] - w["cpu_us_per_req_paced"],
            g["paced_p99_us"] / w["paced_p99_us"] if w["paced_p99_us"] else 0))
    out.append("\ncore 1 (wrk + origin) busy during the @max runs: " + ", ".join("%s %.0f%%" % (name(p), med[p]["core1_busy_pct"]) for p in order)
               + ". Where it is ~100%, wrk and the origin are the limit and req/s understates that proxy: compare CPU µs/req.")
    if pingap_note:
        out.append("\npingap: skipped, %s." % pingap_note.rstrip("."))

# ------------------------------------------------------------------ TLS and h2
TESTS = [  # test, columns: (key, header, format, scale)
    ("tls-hs-ec", [("rps", "handshakes/s ECDSA", "{:,.0f}", 1), ("cpu_us_per_req_max", "CPU µs/handshake ECDSA", "{:.1f}", 1)]),
    ("tls-hs-rsa", [("rps", "handshakes/s RSA", "{:,.0f}", 1), ("cpu_us_per_req_max", "CPU µs/handshake RSA", "{:.1f}", 1)]),
    ("tls-ka", [("rps", "TLS keep-alive req/s", "{:,.0f}", 1), ("p99_us", "p99 ms TLS", "{:.3f}", 1e-3),
                ("cpu_us_per_req_max", "CPU µs/req TLS", "{:.1f}", 1)]),
    ("h2", [("rps", "h2 req/s", "{:,.0f}", 1), ("cpu_us_per_req_max", "CPU µs/req h2", "{:.1f}", 1)]),
]
LABEL = {"tls-hs-ec": "handshakes ECDSA", "tls-hs-rsa": "handshakes RSA", "tls-ka": "TLS keep-alive", "h2": "h2"}
tmed = {t: medians(t) for t, _ in TESTS}
tests = [(t, c) for t, c in TESTS if tmed[t]]
if tests:
    D, C, HC, H2C, H2S = (env("LR_DURATION", "5"), env("LR_CONNS", "50"), env("LR_HS_CONNS", "50"),
                          env("LR_H2_CONNS", "10"), env("LR_H2_STREAMS", "10"))
    present = set().union(*(tmed[t].keys() for t, _ in tests))
    order = ordered(present, "LR_TLS_ORDER", "weir nginx haproxy pingap")
    out.append("\n## TLS and HTTP/2\n")
    out.append("- the same proxies, one https listener each (self-signed ECDSA P-256 or RSA 2048 certificate, made by openssl for the run; TLS 1.2 and 1.3 offered, HTTP/2 by ALPN), plain HTTP/1.1 with keep-alive to the origin; each cell after a 1 s warm-up")
    if any(t.startswith("tls-hs") for t, _ in tests):
        out.append("- handshakes/s: wrk -t1 -c%s -H 'Connection: close' over https, %s s: a new TCP connection, a full handshake and one request each time; benches/tls_noresume.c, preloaded into wrk, keeps it from resuming sessions (servers keep their default session caches and tickets). CPU µs/handshake = proxy CPU / requests, so it includes the one request and the TCP connection" % (HC, D))
    if "tls-ka" in dict(tests):
        out.append("- TLS keep-alive: wrk -t1 -c%s over https (ECDSA), %s s, HTTP/1.1" % (C, D))
    if "h2" in dict(tests):
        out.append("- h2: h2load -t1 -c%s -m%s -D %s over https (ECDSA), ALPN h2 (%s connections × %s concurrent streams)" % (H2C, H2S, D, H2C, H2S))
    out.append("")
    cols = [(t, c) for t, cs in tests for c in cs]
    out.append("| proxy | " + " | ".join(c[1] for _, c in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))

    def tcell(p, t, c):
        m = tmed[t]
        if p not in m:
            return "–"
        key, _, fmt, scale = c
        base = m["nginx"][key] if p != "nginx" and "nginx" in m else 0
        return with_ratio(m[p][key], base, fmt, scale)

    for p in order:
        out.append("| %s | " % name(p) + " | ".join(tcell(p, t, c) for t, c in cols) + " |")
    if "weir" in present and "pingap" in present:
        parts = []
        for t, cs in tests:
            m = tmed[t]
            if "weir" in m and "pingap" in m:
                for key, header, _, _ in cs:
                    if m["pingap"][key]:
                        parts.append("%s %.2f×" % (header, m["weir"][key] / m["pingap"][key]))
        if parts:
            out.append("\nweir / pingap: " + ", ".join(parts))
    out.append("\nproxy CPU % (core 1 busy %) during each run: " + "; ".join(
        "%s: " % LABEL[t] + ", ".join("%s %.0f (%.0f)" % (name(p), tmed[t][p]["cpu_pct_max"], tmed[t][p]["core1_busy_pct"])
                                      for p in order if p in tmed[t]) for t, _ in tests)
        + ". Below ~95% proxy CPU the client side (wrk or h2load + origin on core 1) was the limit: compare CPU µs.")
    hs = [r for r in rows if r["test"].startswith("tls-hs")]
    if hs:
        full = sum(num(r["handshakes_full"]) for r in hs)
        resumed = sum(num(r["handshakes_resumed"]) for r in hs)
        reqs = sum(num(r["requests"]) for r in hs)
        out.append("\nhandshakes counted in wrk over all handshake runs: %d full, %d resumed, for %d requests (%.3f full handshakes per request;"
                   " a little over 1 since each connection open when wrk stops has shaken hands without finishing its request)"
                   % (full, resumed, reqs, full / reqs if reqs else 0))
        if resumed or (reqs and full / reqs < 0.98):
            out.append("\nWARNING: not every request had its own full handshake")
    params = {}
    for r in rows:
        if r["test"] != "http" and r.get("tls") not in (None, "", "-"):
            key = "ECDSA" if r["test"] in ("tls-hs-ec", "tls-ka", "h2") else "RSA"
            params.setdefault((r["proxy"], key), []).append(r["tls"])
    if params:
        out.append("\nnegotiated (openssl s_client, protocol/cipher/key exchange/signature): " + "; ".join(
            "%s %s %s" % (name(p), k, statistics.mode(params[(p, k)]))
            for p in order for k in ("ECDSA", "RSA") if (p, k) in params))
    if pingap_note:
        out.append("\npingap: skipped, %s." % pingap_note.rstrip("."))

# ------------------------------------------------------------------ warnings
label = lambda r: name(r["proxy"]) + ("" if r["test"] == "http" else " " + LABEL.get(r["test"], r["test"]))
noisy = [(r["round"], label(r), num(r["noise_pct"])) for r in rows if num(r["noise_pct"]) >= 10]
if noisy:
    out.append("\nNOISE: other processes on the machine used this much of a core during: "
               + ", ".join("round %s %s (%.0f%%)" % n for n in noisy) + " — rerun on a quiet machine")
bad = {}
for r in rows:
    if num(r["errors"]):
        bad[label(r)] = bad.get(label(r), 0) + num(r["errors"])
if bad:
    out.append("\nWARNING: non-2xx responses or socket errors: " + ", ".join("%s %d" % kv for kv in bad.items()))
text = "\n".join(out) + "\n"
open(md, "w").write(text)
print(text)

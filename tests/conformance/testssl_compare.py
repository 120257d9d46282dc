#!/usr/bin/env python3
"""Compares two testssl.sh JSON reports (weir's and nginx's) finding by finding.

    testssl_compare.py WEIR.json NGINX.json     # PASS/FAIL lines
    testssl_compare.py --protocols TLS13.json   # TLS 1.2 must be "not offered"

A finding (testssl id) fails when weir's severity is worse than nginx's for the
same id (an id nginx does not report counts as OK for nginx). Severity order:
OK = INFO < LOW < MEDIUM < HIGH < CRITICAL; WARN/DEBUG (scanner notes) are
listed but not ranked. Both servers use the same certificate, so the
certificate's own findings (self-signed, no OCSP/CRL) cancel out.
"""

import collections
import json
import sys

RANK = {"OK": 0, "INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}


def findings(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return None, str(e)
    if isinstance(data, dict):  # --jsonfile-pretty layout
        data = [x for s in data.get("scanResult", []) for v in s.values() if isinstance(v, list) for x in v]
    return {x["id"]: x for x in data if "id" in x}, ""


def counts(found):
    c = collections.Counter(x["severity"] for x in found.values())
    return ", ".join(f"{k} {c[k]}" for k in ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN"] if c[k]) or "none"


def compare(weir_path, nginx_path):
    weir, err = findings(weir_path)
    nginx, err2 = findings(nginx_path)
    if weir is None or nginx is None or not weir or not nginx:
        print(f"FAIL testssl: no usable report ({err or err2 or 'empty'})")
        return 1
    print(f"INFO testssl weir:  {counts(weir)}")
    print(f"INFO testssl nginx: {counts(nginx)}")
    worse, better = [], []
    for fid, w in weir.items():
        ws = RANK.get(w["severity"])
        ns = RANK.get(nginx.get(fid, {}).get("severity", "OK"), 0)
        if ws is None:
            continue
        line = f"{fid} weir {w['severity']} ({w['finding'][:90]}) vs nginx {nginx.get(fid, {}).get('severity', 'absent')}"
        if ws > ns:
            worse.append(line)
        elif ws < ns:
            better.append(line)
    for fid, n in nginx.items():
        if fid not in weir and RANK.get(n["severity"], 0) > 0:
            better.append(f"{fid} weir absent vs nginx {n['severity']} ({n['finding'][:90]})")
    for line in better:
        print(f"INFO testssl weir better: {line}")
    for line in worse:
        print(f"FAIL testssl: weir worse than nginx's defaults: {line}")
    if not worse:
        print(f"PASS testssl: no weir finding worse than nginx's defaults "
              f"(weir: {counts(weir)}; nginx: {counts(nginx)})")
    return 1 if worse else 0


def protocols(path):
    found, err = findings(path)
    if not found:
        print(f"FAIL testssl -p on the min_version 1.3 listener: no usable report ({err or 'empty'})")
        return 1
    offered = {p: found[p]["finding"] for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]
               if p in found}
    ok = "not offered" in offered.get("TLS1_2", "") and offered.get("TLS1_3", "").startswith("offered")
    print(f"{'PASS' if ok else 'FAIL'} testssl -p on the min_version 1.3 listener: TLS 1.2 "
          f"{offered.get('TLS1_2', '?')!r}, TLS 1.3 {offered.get('TLS1_3', '?')!r} (item 7)")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "--protocols":
        sys.exit(protocols(sys.argv[2]))
    sys.exit(compare(sys.argv[1], sys.argv[2]))

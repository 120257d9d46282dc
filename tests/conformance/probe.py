#!/usr/bin/env python3
"""HTTP/2 -> HTTP/1.1 translation and HTTP/1.1 desync probes against a running
weir (started by tests/conformance/run.sh), through a backend that records
the exact bytes it receives (recorder.py).

Usage: probe.py HTTP_PORT HTTPS_PORT BACKEND_PORT

weir's config must send every request of both listeners to 127.0.0.1:BACKEND_PORT
(no health check). Prints one `PASS name: detail` or `FAIL name: detail` line
per check; exit status 0 when every check passed.
"""

import socket
import sys

from clients import h1_exchange, h2_request, read_responses
from recorder import Recorder, Request

RESULTS = []


def report(ok, name, detail):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def show(data, n=220):
    text = repr(data[:n])
    return text + ("…" if len(data) > n else "")


def backend_view(rec, mark):
    """(bytes, requests parsed, ambiguities) the backend saw since `mark`.
    Connections that weir closed mid-request are not errors (the backend never
    saw a request); one left open mid-request is reported as an ambiguity."""
    rec.quiet()
    data, events = rec.since(mark)
    reqs = [e for e in events if isinstance(e, Request)]
    errs = [e for e in events if not isinstance(e, Request) and e[0] == "ambiguous"]
    errs += [("left open mid-request", c, "") for c in rec.left_mid_request(mark)]
    return data, reqs, errs


# ---------------------------------------------------------------- HTTP/1.1


def h1_vector(ctx, name, raw, must=None, want=1):
    """Sends `raw`; passes when weir refused it (4xx/5xx or closed, backend got
    nothing) or the backend got exactly one request that a strict parser reads
    unambiguously, with nothing smuggled. `must(status, reqs)` may add a
    requirement: it returns None when met, else the reason."""
    rec = ctx["rec"]
    mark = rec.mark()
    resps, closed = h1_exchange(ctx["http"], raw, want=want)
    finals = [r for r in resps if r.status >= 200]
    status = finals[0].status if finals else None
    data, reqs, errs = backend_view(rec, mark)
    smuggled = [r for r in reqs if "smuggled" in r.line]
    said = f"weir {status if status else 'closed, no answer' if closed else 'no answer'}"
    if len(finals) > 1:
        said += f" (+{len(finals) - 1} more responses: {[r.status for r in finals[1:]]})"
    seen = f"backend got {len(data)} B {show(data)}" if data else "backend got nothing"
    parsed = f" parsed as {reqs}{' and ' + str(errs) if errs else ''}" if data else ""
    detail = f"{said}; {seen}{parsed}"
    if smuggled or errs:
        ok = False
    elif status is None and not closed:
        ok = False
        detail = "weir neither answered nor closed the connection within 3 s; " + detail
    elif status is None or status >= 400:
        # refused; the backend may have got the head of a request weir then
        # found bad in its body, if weir closed that connection (errs)
        ok = not reqs
        if data:
            detail += "; weir closed that backend connection mid-request"
    else:
        ok = len(reqs) == 1 and len(finals) == 1
    if ok and must is not None:
        why = must(status, reqs)
        if why:
            ok, detail = False, f"{why}; {detail}"
    report(ok, name, detail)


def status_is(code):
    return lambda status, reqs: None if status == code else f"expected {code}"


def refused(status, reqs):
    return None if status is None or status >= 400 else "expected a refusal"


H = b"Host: conf.test\r\n"
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: conf.test\r\n\r\n"


def desync_vectors():
    """(name, raw bytes, extra requirement)"""
    post = b"POST /desync HTTP/1.1\r\n" + H
    return [
        ("CL.TE (both framings)",
         post + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", None),
        ("TE.CL with a smuggled request",
         post + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n%x\r\n" % len(SMUGGLE) + SMUGGLE
         + b"\r\n0\r\n\r\n", None),
        ("TE 'chunked, identity'",
         post + b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", refused),
        ("TE 'identity, chunked' + CL",
         post + b"Transfer-Encoding: identity, chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", None),
        ("TE obs-fold",
         post + b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", None),
        ("TE tab before value", post + b"Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", None),
        ("TE upper case", post + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", None),
        ("TE space before colon",
         post + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", refused),
        ("TE 'xchunked'", post + b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello", refused),
        ("TE duplicated",
         post + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         None),
        ("TE vertical tab", post + b"Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n\r\nhello", None),
        ("TE in HTTP/1.0", b"POST /desync HTTP/1.0\r\n" + H
         + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", None),
        ("CL '5, 5' (item 6)", post + b"Content-Length: 5, 5\r\n\r\nhello", status_is(400)),
        ("CL repeated same value (item 6)",
         post + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", None),
        ("CL two values", post + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", refused),
        ("CL '+5'", post + b"Content-Length: +5\r\n\r\nhello", refused),
        ("CL '-1'", post + b"Content-Length: -1\r\n\r\nhello", refused),
        ("CL '0x5'", post + b"Content-Length: 0x5\r\n\r\nhello", refused),
        ("CL huge", post + b"Content-Length: 99999999999999999999999\r\n\r\nhello", refused),
        ("bare LF in chunk extension (item 1)",
         post + b"Transfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n", refused),
        ("bare LF after chunk size",
         post + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", None),
        ("chunk size '0x5'", post + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", refused),
        ("chunk size '-5'", post + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", refused),
        ("chunk size overflow",
         post + b"Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", refused),
        ("chunk size empty", post + b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", refused),
        ("chunk size missing before an extension",
         post + b"Transfer-Encoding: chunked\r\n\r\n;x\r\nhello\r\n0\r\n\r\n", refused),
        ("chunk data longer than its size",
         post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", refused),
        ("NUL in a header value", b"GET /desync HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", refused),
        ("control char in a header value", b"GET /desync HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", refused),
        ("bare CR in a header value", b"GET /desync HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", refused),
        ("NUL in the request-target", b"GET /de\x00sync HTTP/1.1\r\n" + H + b"\r\n", refused),
        ("space in a header name", b"GET /desync HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", refused),
        ("duplicate Host", b"GET /desync HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", refused),
        ("no Host in HTTP/1.1", b"GET /desync HTTP/1.1\r\n\r\n", refused),
        ("obs-fold in another header",
         b"GET /desync HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", None),
        ("HTTP/1.2", b"GET /desync HTTP/1.2\r\n" + H + b"\r\n", None),
        ("bare LF line ends", b"GET /desync HTTP/1.1\n" + H[:-2] + b"\n\n", None),
        ("GET with a body holding a request",
         b"GET /desync HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(SMUGGLE) + SMUGGLE, None),
        ("absolute-form", b"GET http://conf.test/abs?q=1 HTTP/1.1\r\n" + H + b"\r\n",
         lambda st, reqs: None if not reqs or reqs[0].line == "GET /abs?q=1 HTTP/1.1"
         else f"backend request line {reqs[0].line!r}"),
        ("absolute-form with another Host",
         b"GET http://conf.test/abs HTTP/1.1\r\nHost: other.test\r\n\r\n",
         lambda st, reqs: None if not reqs or reqs[0].header("host") == ["conf.test"]
         else f"backend Host {reqs[0].header('host')} (RFC 9112 §3.2.2: the target's authority wins)"),
    ]


def expect_continue(ctx):
    """Item 4: `Expect: 100-continue` answered 100, then 200, and the connection
    serves a second request (no Connection: close)."""
    rec = ctx["rec"]
    mark = rec.mark()
    s = socket.create_connection(ctx["http"], timeout=3)
    try:
        s.sendall(b"POST /expect HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        first, _ = read_responses(s, want=1, limit=1.5, informational=True)
        got100 = any(r.status == 100 for r in first)
        s.sendall(b"hello")
        rest, closed = read_responses(s, want=0 if any(r.status >= 200 for r in first) else 1, limit=3)
        finals = [r for r in first + rest if r.status >= 200]
        conn_hdr = finals[0].header("connection") if finals else ""
        s.sendall(b"GET /expect-second HTTP/1.1\r\n" + H + b"\r\n")
        second, closed2 = read_responses(s, want=1, limit=3)
    except OSError as e:
        report(False, "Expect: 100-continue keeps the connection (item 4)", f"socket error {e!r}")
        return
    finally:
        s.close()
    data, reqs, errs = backend_view(rec, mark)
    ok = (got100 and finals and finals[0].status == 200 and "close" not in conn_hdr.lower()
          and second and second[0].status == 200 and len(reqs) == 2 and not errs)
    report(ok, "Expect: 100-continue keeps the connection (item 4)",
           f"100 sent: {got100}; final {[r.status for r in finals]} Connection: {conn_hdr or '-'}; "
           f"second request on it: {[r.status for r in second] or 'none'}; backend got {reqs} {errs or ''}")


def pipelining(ctx):
    rec = ctx["rec"]
    mark = rec.mark()
    raw = (b"GET /pipe1 HTTP/1.1\r\n" + H + b"\r\n" + b"POST /pipe2 HTTP/1.1\r\n" + H
           + b"Content-Length: 3\r\n\r\nabc" + b"GET /pipe3 HTTP/1.1\r\n" + H + b"\r\n")
    resps, _ = h1_exchange(ctx["http"], raw, want=3)
    data, reqs, errs = backend_view(rec, mark)
    lines = [r.line.split(" ")[1] for r in reqs]
    ok = [r.status for r in resps] == [200, 200, 200] and lines == ["/pipe1", "/pipe2", "/pipe3"] and not errs
    order = [r.body.decode(errors="replace").strip() for r in resps]
    report(ok, "pipelining: 3 requests in one write",
           f"weir {[r.status for r in resps]} bodies {order}; backend got {lines} {errs or ''}")


# ---------------------------------------------------------------- HTTP/2


def base(path, method=b"GET", extra=()):
    return [(b":method", method), (b":scheme", b"https"), (b":authority", b"h2.conf.test"),
            (b":path", path)] + list(extra)


def h2_one(ctx, name, headers, data=None, trailers=None, judge=None):
    rec = ctx["rec"]
    mark = rec.mark()
    res = h2_request(ctx["https"], headers, data, trailers)
    data_seen, reqs, errs = backend_view(rec, mark)
    ok, why = judge(res, reqs, errs, data_seen)
    seen = f"backend got {len(data_seen)} B {show(data_seen, 300)}" if data_seen else "backend got nothing"
    report(ok, name, f"{why}; weir {res.summary()}; {seen}")


def h2_refused(res):
    """The stream was refused: RST_STREAM, GOAWAY before any answer, a 4xx/5xx,
    or the client library would not send it."""
    return bool(res.reset is not None or (res.goaway is not None and res.status is None)
                or (res.status or 0) >= 400 or res.local_error)


def one_clean(reqs, errs):
    return len(reqs) == 1 and not errs


def h2_checks(ctx):
    def pseudo(res, reqs, errs, _):
        if not one_clean(reqs, errs):
            return False, "expected one request"
        r = reqs[0]
        ok = r.line == "POST /h2/pseudo?q=1&r=%2F HTTP/1.1" and r.header("host") == ["h2.conf.test"]
        return ok and res.status == 200, f"request line {r.line!r}, Host {r.header('host')}"
    h2_one(ctx, "h2: pseudo-headers become the request line and Host",
           base(b"/h2/pseudo?q=1&r=%2F", b"POST", [(b"content-length", b"2")]), [b"hi"], judge=pseudo)

    def cookies(res, reqs, errs, _):
        if not one_clean(reqs, errs):
            return False, "expected one request"
        c = reqs[0].header("cookie")
        return c == ["a=1; b=2; c=3"], f"backend Cookie fields {c}"
    h2_one(ctx, "h2: several cookie fields joined with '; ' (item 3)",
           base(b"/h2/cookies", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"cookie", b"c=3")]),
           judge=cookies)

    def xfh(res, reqs, errs, _):
        if not one_clean(reqs, errs):
            return False, "expected one request"
        v = reqs[0].header("x-forwarded-host")
        return v == ["h2.conf.test"], f"X-Forwarded-Host {v}"
    h2_one(ctx, "h2: X-Forwarded-Host from :authority (item 2)", base(b"/h2/xfh"), judge=xfh)

    def req_trailers(res, reqs, errs, _):
        if not one_clean(reqs, errs):
            return False, "expected one request"
        r = reqs[0]
        return (r.body == b"hello world" and res.status == 200,
                f"body {r.body!r} framing {r.framing}, trailers forwarded: {r.trailers or 'none'}")
    h2_one(ctx, "h2: request with trailers reaches the backend whole",
           base(b"/h2/trailers-in", b"POST", [(b"te", b"trailers")]), [b"hello ", b"world"],
           trailers=[(b"x-checksum", b"abc")], judge=req_trailers)

    def resp_trailers(res, reqs, errs, _):
        if not one_clean(reqs, errs):
            return False, "expected one request"
        te = reqs[0].header("te")
        return (res.status == 200 and res.body == b"hello",
                f"answer body {res.body!r}, response trailers {res.trailers or 'none'}; "
                f"te at the backend {te or 'not forwarded'}")
    h2_one(ctx, "h2: 'te: trailers' accepted, chunked answer with a trailer",
           base(b"/trailers", extra=[(b"te", b"trailers")]), judge=resp_trailers)

    def not_as_sent(body):
        def judge(res, reqs, errs, data):
            whole = [r for r in reqs if "/h2/cl" in r.line]
            refused = h2_refused(res) or res.status is None
            head_only = bool(data) and not whole
            why = ("backend got a complete request" if whole else
                   "head reached the backend, not a complete request" if head_only else
                   "backend not contacted")
            if errs:
                why += f"; {errs}"
            elif head_only:
                why += ", and weir closed that backend connection"
            return refused and not whole and not errs, why
        return judge
    h2_one(ctx, "h2: DATA longer than content-length never reaches the backend as sent",
           base(b"/h2/cl-long", b"POST", [(b"content-length", b"5")]), [b"helloworld"],
           judge=not_as_sent(b"helloworld"))
    h2_one(ctx, "h2: DATA shorter than content-length never reaches the backend as sent",
           base(b"/h2/cl-short", b"POST", [(b"content-length", b"10")]), [b"hello"],
           judge=not_as_sent(b"hello"))

    def untouched(res, reqs, errs, data):
        ok = not data and h2_refused(res)
        return ok, "backend not contacted" if not data else "backend contacted"
    h2_one(ctx, "h2: content-length mismatch answered without contacting the backend (item 12)",
           base(b"/h2/cl-short2", b"POST", [(b"content-length", b"10")]), [b"hello"], judge=untouched)

    for name, value in [(b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"),
                        (b"proxy-connection", b"keep-alive"), (b"transfer-encoding", b"chunked"),
                        (b"upgrade", b"websocket"), (b"te", b"gzip")]:
        def conn_specific(res, reqs, errs, data, name=name):
            refused = h2_refused(res)
            if refused:
                return not data, "refused" + ("" if not data else " but the backend got bytes")
            if not one_clean(reqs, errs):
                return False, "expected a refusal or one clean request"
            got = reqs[0].header(name.decode())
            return not got, f"forwarded; {name.decode()} at the backend: {got or 'stripped'}"
        h2_one(ctx, f"h2: connection-specific '{name.decode()}: {value.decode()}' refused or stripped",
               base(b"/h2/connspec", extra=[(name, value)]), judge=conn_specific)

    def injection(res, reqs, errs, data):
        smuggled = [r for r in reqs if "smuggled" in r.line]
        refused = h2_refused(res)
        if smuggled or errs:
            return False, "CRLF reached the backend"
        return (bool(refused) and not data) or one_clean(reqs, errs), "refused" if refused else "one request"
    h2_one(ctx, "h2: CRLF inside a header value cannot inject a request",
           base(b"/h2/inject", extra=[(b"x-a", b"v\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x")]),
           judge=injection)
    h2_one(ctx, "h2: upper-case header name refused or lowered",
           base(b"/h2/upper", extra=[(b"X-Upper", b"1")]),
           judge=lambda res, reqs, errs, data: (
               h2_refused(res) and not data or one_clean(reqs, errs),
               "refused" if not data else f"forwarded as {reqs[0].header('x-upper') if reqs else '?'}"))


def main():
    http_port, https_port, backend_port = (int(a) for a in sys.argv[1:4])
    rec = Recorder(backend_port)
    rec.start()
    ctx = {"rec": rec, "http": ("127.0.0.1", http_port), "https": ("127.0.0.1", https_port)}
    h2_checks(ctx)
    for name, raw, must in desync_vectors():
        h1_vector(ctx, f"h1: {name}", raw, must)
    expect_continue(ctx)
    pipelining(ctx)
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A backend that records the exact bytes it receives (conformance probes).

`Recorder` listens on 127.0.0.1:PORT in a thread. Every byte every connection
sends is kept (`chunks`), and each connection's bytes are parsed as HTTP/1.1
requests by a deliberately strict parser (RFC 9112): exactly one framing
(one `Content-Length` of digits, or `Transfer-Encoding: chunked` alone), CRLF
line ends, no obs-fold, no control characters, one Host. A request that
parses is answered `200` (with `Content-Length`); the path `/trailers` gets a
chunked answer with a trailer. Whatever does not parse is recorded as an
error (`ambiguous: ...`) and the connection is answered 400 and closed: a
proxy that forwards such bytes has passed on something two parsers may read
differently.
"""

import socket
import threading
import time

CTL = set(range(0x00, 0x20)) - {0x09} | {0x7F}
TOKEN = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Bad(Exception):
    """Bytes that a strict HTTP/1.1 parser refuses."""


class Request:
    """One request as the backend parsed it."""

    def __init__(self, conn, line, headers, body, framing, trailers):
        self.conn, self.line, self.headers = conn, line, headers
        self.body, self.framing, self.trailers = body, framing, trailers

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<{self.line!r} {self.framing} body={len(self.body)}B>"


class Conn:
    """Blocking reads of one backend connection, recording every byte."""

    def __init__(self, rec, sock, cid):
        self.rec, self.sock, self.cid, self.buf = rec, sock, cid, b""

    def more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.rec.record(self.cid, data)
        self.rec.set_state(self.cid, "mid")
        self.buf += data

    def line(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise Bad("line too long")
            self.more()
        i = self.buf.index(b"\n")
        raw, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:
            raise Bad(f"line not ended by CRLF alone: {raw[:80]!r}")
        return raw[:-2]

    def exactly(self, n):
        while len(self.buf) < n:
            self.more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def check_field(raw):
    if raw[:1] in (b" ", b"\t"):
        raise Bad(f"obs-fold: {raw[:80]!r}")
    name, sep, value = raw.partition(b":")
    if not sep or not name or any(c not in TOKEN for c in name):
        raise Bad(f"bad field line: {raw[:80]!r}")
    if any(c in CTL for c in value):
        raise Bad(f"control character in field value: {raw[:80]!r}")
    return name.decode(), value.strip(b" \t").decode("latin-1")


def read_fields(c):
    fields = []
    while True:
        raw = c.line()
        if raw == b"":
            return fields
        fields.append(check_field(raw))


def read_chunked(c):
    body = b""
    while True:
        size_line = c.line()
        size, _, ext = size_line.partition(b";")
        if not size or any(ch not in b"0123456789abcdefABCDEF" for ch in size) or len(size) > 15:
            raise Bad(f"bad chunk size line: {size_line[:80]!r}")
        if any(ch in CTL for ch in ext):
            raise Bad(f"control character in chunk extension: {size_line[:80]!r}")
        n = int(size, 16)
        if n == 0:
            return body, read_fields(c)
        body += c.exactly(n)
        if c.exactly(2) != b"\r\n":
            raise Bad("chunk data not followed by CRLF")


def framing_of(headers):
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == "content-length"]
    hosts = [v for k, v in headers if k.lower() == "host"]
    if len(hosts) != 1:
        raise Bad(f"{len(hosts)} Host fields")
    if te and cl:
        raise Bad("both Transfer-Encoding and Content-Length")
    if len(te) > 1 or len(cl) > 1:
        raise Bad(f"repeated framing field: te={te} cl={cl}")
    if te:
        if te[0].lower() != "chunked":
            raise Bad(f"Transfer-Encoding {te[0]!r}")
        return "chunked", 0
    if cl:
        if not cl[0].isdigit() or not cl[0].isascii():
            raise Bad(f"Content-Length {cl[0]!r}")
        return "content-length", int(cl[0])
    return "none", 0


def read_request(c):
    line = c.line()
    parts = line.split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or any(ch in CTL for ch in line):
        raise Bad(f"bad request line: {line[:100]!r}")
    headers = read_fields(c)
    framing, n = framing_of(headers)
    trailers = []
    if framing == "chunked":
        body, trailers = read_chunked(c)
    else:
        body = c.exactly(n)
    return Request(c.cid, line.decode("latin-1"), headers, body, framing, trailers)


def answer(req, n):
    if req.line.split(" ")[1].startswith("/trailers"):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                b"5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
    body = f"request {n}\n".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Recorder:
    """The recording backend: `start()`, then `mark()` / `since(mark)` per check."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.chunks = []     # (conn id, time, bytes)
        self.events = []     # Request or ("error", conn id, reason) or ("eof-mid-request", ...)
        self.last_byte = 0.0
        self.next_id = 0
        self.state = {}      # conn id -> "idle" | "mid" (a request begun, not complete) | "closed"

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def record(self, cid, data):
        with self.lock:
            self.chunks.append((cid, time.time(), data))
            self.last_byte = time.time()

    def set_state(self, cid, state):
        with self.lock:
            self.state[cid] = state

    def left_mid_request(self, mark, limit=3.0):
        """Connections that got bytes since `mark` and are still open in the
        middle of a request after up to `limit` s: a proxy that left them so
        may send the next request's bytes as the rest of this one."""
        end = time.time() + limit
        while True:
            with self.lock:
                cids = {ch[0] for ch in self.chunks[mark[0]:]}
                mid = sorted(c for c in cids if self.state.get(c) == "mid")
            if not mid or time.time() >= end:
                return mid
            time.sleep(0.05)

    def event(self, ev):
        with self.lock:
            self.events.append(ev)

    def accept_loop(self):
        while True:
            s, _ = self.sock.accept()
            with self.lock:
                self.next_id += 1
                cid = self.next_id
            threading.Thread(target=self.serve, args=(s, cid), daemon=True).start()

    def serve(self, s, cid):
        s.settimeout(30)
        c = Conn(self, s, cid)
        try:
            while True:
                try:
                    req = read_request(c)
                except EOFError:
                    if c.buf:
                        self.event(("eof-mid-request", cid, c.buf[:200]))
                    return
                except socket.timeout:
                    if c.buf:
                        self.event(("timeout-mid-request", cid, c.buf[:200]))
                    return
                self.event(req)
                s.sendall(answer(req, len(self.events)))
                if not c.buf:
                    self.set_state(cid, "idle")
        except Bad as e:
            self.event(("ambiguous", cid, str(e)))
            try:
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
        except (OSError, EOFError) as e:
            self.event(("conn-error", cid, repr(e)))
        finally:
            s.close()
            self.set_state(cid, "closed")

    def mark(self):
        with self.lock:
            return len(self.chunks), len(self.events)

    def quiet(self, settle=0.5, limit=3.0):
        """Waits until no byte has arrived for `settle` s, counted from this
        call at the earliest (at most `limit` s)."""
        begin = time.time()
        end = begin + limit
        while time.time() < end:
            with self.lock:
                idle = time.time() - max(self.last_byte, begin)
            if idle >= settle:
                return
            time.sleep(0.05)

    def since(self, mark):
        with self.lock:
            data = b"".join(ch[2] for ch in self.chunks[mark[0]:])
            return data, list(self.events[mark[1]:])

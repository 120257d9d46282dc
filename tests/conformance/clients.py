"""Clients of the conformance probes: raw HTTP/1.1 over a socket, and HTTP/2
over TLS with the `h2` library (outbound validation off, so that malformed
requests can be sent on purpose). Every read is bounded in time."""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class Resp:
    """One HTTP/1.1 response as the client read it."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return ", ".join(v for k, v in self.headers if k.lower() == name.lower())


def _parse_one(buf):
    """(Resp, rest) when `buf` starts with a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
    rest = buf[end + 4:]
    r = Resp(status, headers, b"")
    if 100 <= status < 200 or status in (204, 304):
        return r, rest
    if r.header("transfer-encoding").lower() == "chunked":
        body = b""
        while True:
            i = rest.find(b"\r\n")
            if i < 0:
                return None
            n = int(rest[:i].split(b";")[0] or b"0", 16)
            if n == 0:
                j = rest.find(b"\r\n\r\n", i)
                if j < 0 and rest[i:i + 4] != b"\r\n\r\n":
                    return None
                r.body = body
                return r, rest[(j + 4 if j >= 0 else i + 4):]
            if len(rest) < i + 2 + n + 2:
                return None
            body += rest[i + 2:i + 2 + n]
            rest = rest[i + 2 + n + 2:]
    n = int(r.header("content-length") or 0)
    if len(rest) < n:
        return None
    r.body = rest[:n]
    return r, rest[n:]


def read_responses(sock, want, limit=3.0, informational=False):
    """Reads until `want` final responses (any responses with `informational`),
    the peer closes, or `limit` s pass. Returns (responses incl. 1xx, closed)."""
    buf, out, closed = b"", [], False
    end = time.time() + limit
    floor = 100 if informational else 200
    while sum(1 for r in out if r.status >= floor) < want and time.time() < end:
        sock.settimeout(max(0.05, end - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not data:
            closed = True
            break
        buf += data
        while True:
            got = _parse_one(buf)
            if got is None:
                break
            out.append(got[0])
            buf = got[1]
    return out, closed


def h1_exchange(addr, raw, want=1, limit=3.0):
    """Sends `raw` on a new connection and reads up to `want` final responses."""
    s = socket.create_connection(addr, timeout=3)
    try:
        s.sendall(raw)
        return read_responses(s, want, limit)
    finally:
        s.close()


class H2Result:
    """What one HTTP/2 stream got back."""

    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.trailers = []
        self.reset = None
        self.goaway = None
        self.ended = False
        self.local_error = None

    def summary(self):
        if self.local_error:
            return f"client could not send: {self.local_error}"
        if self.reset is not None:
            return f"RST_STREAM {self.reset}"
        if self.goaway is not None and self.status is None:
            return f"GOAWAY {self.goaway}"
        return f"{self.status}" if self.status is not None else "no answer"


def h2_connect(addr):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(addr, timeout=3)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    if s.selected_alpn_protocol() != "h2":
        raise RuntimeError(f"ALPN {s.selected_alpn_protocol()!r}")
    cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                    validate_outbound_headers=False,
                                    normalize_outbound_headers=False,
                                    validate_inbound_headers=False)
    conn = h2.connection.H2Connection(cfg)
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def h2_request(addr, headers, data=None, trailers=None, limit=3.0):
    """One stream on a new connection: `headers` (list of (bytes, bytes)),
    then each item of `data` as a DATA frame, then `trailers`. END_STREAM goes
    on the last frame. Returns an H2Result."""
    res = H2Result()
    s, conn = h2_connect(addr)
    try:
        sid = conn.get_next_available_stream_id()
        frames = list(data or [])
        try:
            conn.send_headers(sid, headers, end_stream=not frames and not trailers)
            for i, d in enumerate(frames):
                conn.send_data(sid, d, end_stream=(i == len(frames) - 1 and not trailers))
            if trailers:
                conn.send_headers(sid, trailers, end_stream=True)
        except h2.exceptions.H2Error as e:
            res.local_error = repr(e)
            return res
        s.sendall(conn.data_to_send())
        _h2_read(s, conn, sid, res, limit)
    finally:
        s.close()
    return res


def _h2_read(s, conn, sid, res, limit):
    end = time.time() + limit
    while not res.ended and res.reset is None and time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            data = s.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not data:
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.H2Error as e:
            res.local_error = f"server sent something h2 refused: {e!r}"
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                res.headers = ev.headers
                res.status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                res.trailers = ev.headers
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id == sid:
                    res.body += ev.data
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                res.ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                res.reset = str(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                res.goaway = str(ev.error_code)
        out = conn.data_to_send()
        if out:
            try:
                s.sendall(out)
            except OSError:
                break

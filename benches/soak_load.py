#!/usr/bin/env python3
"""Traffic, operations and sampling of the soak (started by benches/soak.sh).

One asyncio process runs, for a bounded time and at fixed rates, every client
kind against a running weir (HTTP/1.1 keep-alive, HTTP/1.1 one connection per
request, HTTP/2 over TLS, WebSocket over ws and wss, slow clients), the
operations (a live reload every 10 s, `weir upgrade` every 5 minutes, one
backend SIGKILLed and restarted every minute) and a sample every 10 s of the
current weir process (pid file followed across upgrades): RSS, open fds,
threads, and requests done / errors per client kind. It writes:

  samples.csv   one row per sample (cumulative counters)
  events.log    every operation with its time and outcome
  errors.log    every client error: time, kind, what happened
  windows.json  the backend restart windows (for the report's verdict)

Usage: soak_load.py CONFIG_JSON   (written by soak.sh; keys documented there)
"""

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time

import h2.config
import h2.connection
import h2.events
import websockets

KINDS = ["h1_keepalive", "h1_newconn", "h2_tls", "ws", "slow"]


class Stats:
    """Cumulative counters per client kind, and the error log."""

    def __init__(self, out_dir, start):
        self.ok = {k: 0 for k in KINDS}
        self.err = {k: 0 for k in KINDS}
        self.retried = {k: 0 for k in KINDS}
        self.start = start
        self.errors = open(os.path.join(out_dir, "errors.log"), "a", buffering=1)

    def good(self, kind):
        self.ok[kind] += 1

    def bad(self, kind, what):
        self.err[kind] += 1
        t = time.time()
        self.errors.write(f"{t:.3f}\t{t - self.start:.1f}\t{kind}\t{what}\n")

    def retry(self, kind):
        self.retried[kind] += 1


class Events:
    """The operations log."""

    def __init__(self, out_dir, start):
        self.start = start
        self.f = open(os.path.join(out_dir, "events.log"), "a", buffering=1)
        self.failures = 0

    def log(self, what, failed=False):
        t = time.time()
        if failed:
            self.failures += 1
        self.f.write(f"{t:.3f}\t{t - self.start:.1f}\t{'FAIL ' if failed else ''}{what}\n")


def pid_of(pid_file):
    try:
        with open(pid_file) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


# ---------------------------------------------------------------- HTTP/1.1


async def read_response(reader, timeout=10.0):
    """Reads one HTTP/1.1 response; returns (status, headers dict, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            size = int(size_line.split(b";")[0], 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            body += chunk[:-2]
            if size == 0:
                break
    return status, headers, body


def closes(status, headers):
    return headers.get("connection", "").lower() == "close"


async def paced(rate, stop_at, body):
    """Calls `body()` `rate` times a second until `stop_at` (no catch-up bursts)."""
    period = 1.0 / rate
    nxt = time.monotonic()
    while time.time() < stop_at:
        await body()
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            nxt = time.monotonic()


async def h1_keepalive(cfg, stats, stop_at, n):
    """One keep-alive connection: GET at a fixed rate, reconnecting when weir
    closes it (Connection: close, or idle close seen before sending). A request
    on a reused connection that gets no byte back is retried once on a new
    connection (RFC 9112 §9.3.1: idempotent), counted as `retried`."""
    state = {"rw": None}
    port = cfg["http_port"]

    async def once():
        fresh = False
        if state["rw"] is None or state["rw"][0].at_eof():
            if state["rw"] is not None:
                state["rw"][1].close()
            state["rw"] = await asyncio.open_connection("127.0.0.1", port)
            fresh = True
        reader, writer = state["rw"]
        req = f"GET /ka/{n} HTTP/1.1\r\nHost: soak.test\r\n\r\n".encode()
        try:
            writer.write(req)
            await writer.drain()
            status, headers, _ = await read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            writer.close()
            state["rw"] = None
            got = getattr(e, "partial", b"")
            if fresh or got:
                raise
            stats.retry("h1_keepalive")
            return await once()
        if closes(status, headers):
            writer.close()
            state["rw"] = None
        return status

    async def step():
        try:
            status = await once()
            if status == 200:
                stats.good("h1_keepalive")
            else:
                stats.bad("h1_keepalive", f"status {status}")
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.bad("h1_keepalive", f"{type(e).__name__}: {e}")
            if state["rw"] is not None:
                state["rw"][1].close()
            state["rw"] = None

    await paced(cfg["rate_keepalive"], stop_at, step)
    if state["rw"] is not None:
        state["rw"][1].close()


async def h1_newconn(cfg, stats, stop_at, n):
    """A new connection per request (Connection: close)."""
    port = cfg["http_port"]

    async def step():
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            writer.write(f"GET /new/{n} HTTP/1.1\r\nHost: soak.test\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status, _, _ = await read_response(reader)
            if status == 200:
                stats.good("h1_newconn")
            else:
                stats.bad("h1_newconn", f"status {status}")
        except Exception as e:  # noqa: BLE001
            stats.bad("h1_newconn", f"{type(e).__name__}: {e}")
        finally:
            if writer is not None:
                writer.close()

    await paced(cfg["rate_newconn"], stop_at, step)


async def slow_client(cfg, stats, stop_at, n):
    """Sends its request head a few bytes at a time over ~3 s (the listener's
    header timeout is 10 s), then expects a 200. One connection per request."""
    port = cfg["http_port"]
    head = (f"GET /slow/{n} HTTP/1.1\r\nHost: soak.test\r\nUser-Agent: soak-slow-client\r\n"
            "Accept: */*\r\nX-Padding: slowslowslowslow\r\nConnection: close\r\n\r\n").encode()
    piece = max(1, len(head) // 30)
    while time.time() < stop_at:
        writer = None
        sent, began = 0, time.time()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            for i in range(0, len(head), piece):
                writer.write(head[i:i + piece])
                await writer.drain()
                sent = min(len(head), i + piece)
                await asyncio.sleep(0.1)
            status, _, _ = await read_response(reader)
            if status == 200:
                stats.good("slow")
            else:
                stats.bad("slow", f"status {status}")
        except Exception as e:  # noqa: BLE001
            stats.bad("slow", f"{type(e).__name__}: {e} (connected {time.time() - began:.1f} s ago, "
                              f"{sent} of {len(head)} head bytes sent)")
        finally:
            if writer is not None:
                writer.close()


# ---------------------------------------------------------------- HTTP/2


class GoAway(Exception):
    """The stream was above the GOAWAY's last stream id: never processed, safe to retry."""


class GracefulH2(h2.connection.H2Connection):
    """python-h2 moves the whole connection to CLOSED on any GOAWAY, so the
    answers of streams at or below its last stream id (which RFC 9113 §6.8 lets
    the server finish) and a PING after it raise ProtocolError in the client.
    This keeps a gracefully closing connection (GOAWAY NO_ERROR) open for
    receiving; H2Conn sends no new stream on it."""

    def _receive_goaway_frame(self, frame):
        out = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return out


class H2Conn:
    """A minimal asyncio HTTP/2 client connection (ALPN h2 over TLS)."""

    def __init__(self, port, tls):
        self.port, self.tls = port, tls
        self.pending = {}
        self.closing = False
        self.dead = False

    async def open(self):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls, server_hostname="localhost"), 5)
        alpn = self.writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn != "h2":
            raise RuntimeError(f"ALPN {alpn!r}, not h2")
        self.conn = GracefulH2(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.task = asyncio.ensure_future(self.read_loop())

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def fail_all(self, exc, above=0):
        for sid in [s for s in self.pending if s > above]:
            fut = self.pending.pop(sid)["fut"]
            if not fut.done():
                fut.set_exception(exc)

    async def read_loop(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for ev in self.conn.receive_data(data):
                    self.on_event(ev)
                self.flush()
        except Exception as e:  # noqa: BLE001
            self.fail_all(ConnectionError(f"h2 connection failed: {type(e).__name__}: {e}"))
        self.dead = True
        self.fail_all(ConnectionError("h2 connection closed with the stream open"))
        self.writer.close()

    def on_event(self, ev):
        st = self.pending.get(getattr(ev, "stream_id", 0))
        if isinstance(ev, h2.events.ResponseReceived) and st:
            st["status"] = int(dict(ev.headers)[b":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and st:
            self.pending.pop(ev.stream_id)
            if not st["fut"].done():
                st["fut"].set_result(st.get("status", 0))
        elif isinstance(ev, h2.events.StreamReset) and st:
            self.pending.pop(ev.stream_id)
            if not st["fut"].done():
                st["fut"].set_exception(ConnectionError(f"stream reset, code {ev.error_code}"))
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closing = True
            self.fail_all(GoAway(), above=ev.last_stream_id or 0)

    async def get(self, path):
        sid = self.conn.get_next_available_stream_id()
        fut = asyncio.get_running_loop().create_future()
        self.pending[sid] = {"fut": fut}
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                     (":authority", "soak.test"), (":path", path)], end_stream=True)
        self.flush()
        return await asyncio.wait_for(fut, 10)

    def usable(self):
        return not (self.closing or self.dead)

    def close(self):
        if not self.dead:
            try:
                self.conn.close_connection()
                self.flush()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.writer.close()
        self.task.cancel()


async def h2_client(cfg, stats, stop_at, n):
    """One HTTP/2 connection at a time (a new one after GOAWAY), GETs at a fixed
    rate, several streams in flight. A stream refused by GOAWAY (above its last
    stream id: never processed) is retried once on a new connection."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])
    state = {"c": None}
    tasks = set()
    lock = asyncio.Lock()

    async def conn():
        async with lock:
            if state["c"] is None or not state["c"].usable():
                if state["c"] is not None:
                    state["c"].close()
                c = H2Conn(cfg["https_port"], tls)
                await c.open()
                state["c"] = c
            return state["c"]

    async def one():
        try:
            for attempt in range(2):
                try:
                    status = await (await conn()).get(f"/h2/{n}")
                    break
                except GoAway:
                    if attempt == 1:
                        raise
                    stats.retry("h2_tls")
            if status == 200:
                stats.good("h2_tls")
            else:
                stats.bad("h2_tls", f"status {status}")
        except Exception as e:  # noqa: BLE001
            stats.bad("h2_tls", f"{type(e).__name__}: {e}")
            if state["c"] is not None and not state["c"].usable():
                state["c"] = None

    async def step():
        t = asyncio.ensure_future(one())
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    await paced(cfg["rate_h2"], stop_at, step)
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    if state["c"] is not None:
        state["c"].close()


# ---------------------------------------------------------------- WebSocket


async def ws_client(cfg, stats, stop_at, n):
    """Short WebSocket sessions (10 echoes at 10/s), alternating ws and wss;
    each echo that does not come back identical is an error."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    i = 0
    while time.time() < stop_at:
        i += 1
        secure = i % 2 == 0
        url = (f"wss://127.0.0.1:{cfg['https_port']}" if secure
               else f"ws://127.0.0.1:{cfg['http_port']}") + f"/ws/{n}"
        try:
            async with websockets.connect(url, ssl=tls if secure else None, open_timeout=5,
                                          close_timeout=5) as ws:
                for j in range(10):
                    msg = f"soak {n} {i} {j} " + "x" * (j * 50)
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got == msg:
                        stats.good("ws")
                    else:
                        stats.bad("ws", f"echo mismatch on {'wss' if secure else 'ws'}")
                    await asyncio.sleep(0.1)
        except Exception as e:  # noqa: BLE001
            stats.bad("ws", f"{'wss' if secure else 'ws'} {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)


# ---------------------------------------------------------------- operations


async def run_cmd(args, timeout):
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"timed out after {timeout}s"
    return proc.returncode, out.decode(errors="replace").strip().replace("\n", " | ")


def write_config(cfg, gen):
    with open(cfg["weir_template"]) as f:
        text = f.read().replace("@GEN@", str(gen))
    tmp = cfg["weir_config"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, cfg["weir_config"])


async def operations(cfg, events, stop_at):
    """A live reload every `reload_every` s (each with a changed response header,
    so that something is really rebuilt), and `weir upgrade` instead every
    `upgrade_every` s."""
    gen, t0 = 0, time.time()
    nxt = t0 + cfg["reload_every"]
    while True:
        await asyncio.sleep(max(0, min(nxt, stop_at) - time.time()))
        if time.time() >= stop_at - 5:
            return
        gen += 1
        write_config(cfg, gen)
        elapsed = nxt - t0
        upgrade = cfg["upgrade_every"] > 0 and round(elapsed) % cfg["upgrade_every"] == 0
        old = pid_of(cfg["pid_file"])
        verb = "upgrade" if upgrade else "reload"
        began = time.time()
        rc, out = await run_cmd([cfg["weir_bin"], verb, "-c", cfg["weir_config"]], 60)
        took = time.time() - began
        new = pid_of(cfg["pid_file"])
        failed = rc != 0 or (upgrade and new == old)
        events.log(f"{verb} gen={gen} rc={rc} pid {old}->{new} took={took:.2f}s: {out[:300]}", failed)
        nxt += cfg["reload_every"]


def start_backend(cfg, name):
    b = cfg["backends"][name]
    log = open(b["log"], "a")
    p = subprocess.Popen(b["cmd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(b["pidfile"], "w") as f:
        f.write(str(p.pid))
    return p


async def wait_port(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return True
        except OSError:
            await asyncio.sleep(0.05)
    return False


async def restarter(cfg, events, stop_at, procs):
    """SIGKILLs the restarting backend every `restart_every` s, keeps it down
    `down_for` s, starts it again; records each window [kill, up + settle]."""
    name = cfg["restarting_backend"]
    windows = []
    nxt = time.time() + cfg["restart_every"] / 2
    while True:
        await asyncio.sleep(max(0, min(nxt, stop_at) - time.time()))
        if time.time() >= stop_at - cfg["down_for"] - 5:
            break
        killed = time.time()
        procs[name].kill()
        procs[name].wait()
        events.log(f"backend {name} pid {procs[name].pid} SIGKILLed")
        await asyncio.sleep(cfg["down_for"])
        procs[name] = start_backend(cfg, name)
        ok = await wait_port(cfg["backends"][name]["port"], 10)
        up = time.time()
        events.log(f"backend {name} restarted pid {procs[name].pid} listening={ok}", not ok)
        windows.append([killed, up + cfg["settle"]])
        with open(os.path.join(cfg["out_dir"], "windows.json"), "w") as f:
            json.dump(windows, f)
        nxt += cfg["restart_every"]


def proc_sample(pid):
    rss = fds = threads = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return rss, fds, threads


async def sampler(cfg, stats, stop_at):
    path = os.path.join(cfg["out_dir"], "samples.csv")
    with open(path, "w", buffering=1) as f:
        cols = ["ts", "elapsed_s", "pid", "rss_kib", "fds", "threads"]
        for k in KINDS:
            cols += [f"{k}_ok", f"{k}_err", f"{k}_retried"]
        f.write(",".join(cols) + "\n")
        while True:
            now = time.time()
            pid = pid_of(cfg["pid_file"])
            rss, fds, threads = proc_sample(pid)
            row = [f"{now:.3f}", f"{now - stats.start:.1f}", pid, rss, fds, threads]
            for k in KINDS:
                row += [stats.ok[k], stats.err[k], stats.retried[k]]
            f.write(",".join(str(x) for x in row) + "\n")
            if now >= stop_at:
                return
            await asyncio.sleep(min(cfg["sample_every"], max(0.1, stop_at - now)))


async def main(cfg):
    start = time.time()
    stop_at = start + cfg["duration_s"]
    stats = Stats(cfg["out_dir"], start)
    events = Events(cfg["out_dir"], start)
    procs = {cfg["restarting_backend"]: None}
    # the restarting backend is started here so that its pid is ours to kill
    procs[cfg["restarting_backend"]] = start_backend(cfg, cfg["restarting_backend"])
    if not await wait_port(cfg["backends"][cfg["restarting_backend"]]["port"], 10):
        raise SystemExit("restarting backend did not start")
    with open(os.path.join(cfg["out_dir"], "windows.json"), "w") as f:
        json.dump([], f)
    events.log(f"soak start pid={pid_of(cfg['pid_file'])} duration={cfg['duration_s']}s")
    jobs = [sampler(cfg, stats, stop_at), operations(cfg, events, stop_at),
            restarter(cfg, events, stop_at, procs)]
    jobs += [h1_keepalive(cfg, stats, stop_at, i) for i in range(cfg["keepalive_conns"])]
    jobs += [h1_newconn(cfg, stats, stop_at, i) for i in range(cfg["newconn_loops"])]
    jobs += [h2_client(cfg, stats, stop_at, i) for i in range(cfg["h2_conns"])]
    jobs += [ws_client(cfg, stats, stop_at, i) for i in range(cfg["ws_clients"])]
    jobs += [slow_client(cfg, stats, stop_at, i) for i in range(cfg["slow_clients"])]
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), cfg["duration_s"] + 90)
    finally:
        p = procs[cfg["restarting_backend"]]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    events.log("soak end " + json.dumps({"ok": stats.ok, "err": stats.err, "retried": stats.retried}))
    summary = {"ok": stats.ok, "err": stats.err, "retried": stats.retried,
               "op_failures": events.failures, "start": start, "end": time.time()}
    with open(os.path.join(cfg["out_dir"], "totals.json"), "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with open(sys.argv[1]) as fh:
        asyncio.run(main(json.load(fh)))

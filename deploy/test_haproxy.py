#!/usr/bin/env python3
"""Runs deploy/haproxy.cfg for real in front of two fake gateways on 127.0.0.1.

Each fake gateway has the two crease ports: HTTP (/readyz, /, /metrics) and WebSocket
(/ws: 101 + a `hello` text frame naming the node, or 503 + Retry-After while draining).
The test checks routing, cookie stickiness of the upgrade, the /readyz health check, the
drain path (503 retried on the other gateway, server marked DOWN) and the stats page.
Loopback only, bounded in time; needs haproxy on PATH. Prints "N passed, N failed".
"""
import base64, hashlib, json, os, socket, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def read_head(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], hdrs, rest


class FakeGateway:
    def __init__(self, name):
        self.name = name
        self.draining = False
        self.http_port, self.ws_port = free_port(), free_port()
        self.upgrades = 0
        self.socks = []
        for port, fn in ((self.http_port, self.http), (self.ws_port, self.ws)):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            self.socks.append(s)
            threading.Thread(target=self.accept, args=(s, fn), daemon=True).start()

    def accept(self, s, fn):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c, fn), daemon=True).start()

    def serve(self, c, fn):
        try:
            c.settimeout(10)
            fn(c)
        except OSError:
            pass
        finally:
            c.close()

    def http(self, c):
        while True:
            line, hdrs, _ = read_head(c)
            if not line:
                return
            path = line.split(" ")[1]
            if path == "/readyz":
                code, body = (503, "draining") if self.draining else (200, "ok")
            elif path == "/metrics":
                code, body = 200, "crease_connections{loop=\"0\"} 0\n"
            else:
                code, body = 200, "page from " + self.name
            c.sendall(("HTTP/1.1 %d X\r\nContent-Length: %d\r\nX-Node: %s\r\n\r\n%s"
                       % (code, len(body), self.name, body)).encode())

    def ws(self, c):
        line, hdrs, _ = read_head(c)
        if self.draining:
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                      b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        key = hdrs.get("sec-websocket-key", [""])[0]
        acc = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        hello = json.dumps({"type": "hello", "node": self.name, "heartbeat_s": 20}).encode()
        self.upgrades += 1
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode()
                  + bytes([0x81, len(hello)]) + hello)
        c.recv(1)  # hold the tunnel until the client goes


def request(port, path, headers=None, ws=False):
    """One request through HAProxy; returns (status, headers, body-or-hello-frame)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    h = {"Host": "crease.test"}
    if ws:
        h.update({"Upgrade": "websocket", "Connection": "Upgrade",
                  "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    h.update(headers or {})
    c.sendall(("GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items())
               + "Connection: close\r\n\r\n" if not ws else
               "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items())
               + "\r\n").encode())
    line, hdrs, rest = read_head(c)
    status = int(line.split(" ")[1]) if line else 0
    body = rest
    if status == 101:
        while len(body) < 2 or len(body) < 2 + body[1]:
            body += c.recv(4096)
        body = body[2:2 + body[1]]
    else:
        # No Content-Length (the stats page is chunked): read to the close.
        n = int(hdrs.get("content-length", [str(1 << 30)])[0])
        while len(body) < n:
            chunk = c.recv(4096)
            if not chunk:
                break
            body += chunk
    c.close()
    return status, hdrs, body.decode("latin-1")


def main():
    gw1, gw2 = FakeGateway("gw1"), FakeGateway("gw2")
    front_http, front_ws, stats = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="crease-haproxy-")
    env = dict(os.environ,
               FRONT_HTTP="127.0.0.1:%d" % front_http, FRONT_WS="127.0.0.1:%d" % front_ws,
               STATS_ADDR="127.0.0.1:%d" % stats,
               GW1_WS="127.0.0.1:%d" % gw1.ws_port, GW1_HTTP="127.0.0.1:%d" % gw1.http_port,
               GW2_WS="127.0.0.1:%d" % gw2.ws_port, GW2_HTTP="127.0.0.1:%d" % gw2.http_port,
               HAPROXY_MAXCONN="2000", HAPROXY_SOCKET=os.path.join(tmp, "admin.sock"))
    cfg = os.path.join(HERE, "haproxy.cfg")
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print("%s %s %s" % ("ok  " if ok else "FAIL", name, detail), flush=True)

    rc = subprocess.run(["haproxy", "-c", "-q", "-f", cfg], env=env).returncode
    check("haproxy -c", rc == 0)
    log = open(os.path.join(tmp, "haproxy.log"), "w")
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], env=env, stdout=log, stderr=log)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", front_http), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(2.5)  # first health checks

        st, h, body = request(front_http, "/")
        cookie = [c for c in h.get("set-cookie", []) if c.startswith("SRV=")]
        check("page via fe_public", st == 200 and body.startswith("page from"), body)
        check("page sets SRV cookie", bool(cookie), str(cookie))
        node = body.split()[-1]
        srv = cookie[0].split(";")[0] if cookie else ""
        st, h, hello = request(front_http, "/ws?match=m1", {"Cookie": srv}, ws=True)
        check("upgrade sticks to the page's gateway", st == 101 and ('"%s"' % node) in hello,
              "%d %s" % (st, hello))
        for other in ("gw1", "gw2"):
            st, h, hello = request(front_ws, "/ws", {"Cookie": "SRV=" + other}, ws=True)
            check("fe_ws cookie SRV=%s" % other, st == 101 and ('"%s"' % other) in hello, hello)
        st, h, hello = request(front_ws, "/ws", ws=True)
        check("fe_ws without cookie gets one on 101",
              st == 101 and any(c.startswith("SRV=") for c in h.get("set-cookie", [])),
              str(h.get("set-cookie")))
        st, _, _ = request(front_http, "/metrics")
        check("/metrics hidden on the public side", st == 404, str(st))

        # Drain gw2: readyz 503 and handshakes 503 at once (as crease does on SIGTERM).
        gw2.draining = True
        before = gw1.upgrades
        st, h, hello = request(front_http, "/ws", {"Cookie": "SRV=gw2"}, ws=True)
        check("503 from a draining gateway retried on the other", st == 101
              and '"gw1"' in hello, "%d %s" % (st, hello))
        time.sleep(5)  # inter 2s * fall 2
        st, _, page = request(stats, "/;csv")
        row = [l for l in page.splitlines() if l.startswith("be_http,gw2,")]
        check("gw2 DOWN after /readyz 503", bool(row) and ",DOWN," in row[0],
              row[0][:80] if row else page[:200])
        row = [l for l in page.splitlines() if l.startswith("be_ws,gw2,")]
        check("be_ws/gw2 follows by track", bool(row) and ",DOWN," in row[0],
              row[0][:80] if row else "")
        st, h, hello = request(front_http, "/ws", {"Cookie": "SRV=gw2"}, ws=True)
        check("cookie of a DOWN gateway is ignored", st == 101 and '"gw1"' in hello, hello)
        gw2.draining = False
        time.sleep(5)
        st, h, hello = request(front_http, "/ws", {"Cookie": "SRV=gw2"}, ws=True)
        check("gw2 back after rise", st == 101 and '"gw2"' in hello, hello)
        st, _, page = request(stats, "/")
        check("stats page", st == 200 and "be_ws" in page, str(st))
    finally:
        proc.terminate()
        proc.wait(10)
        for g in (gw1, gw2):
            for s in g.socks:
                s.close()
    passed = sum(results)
    failed = len(results) - passed
    if failed:
        print(open(os.path.join(tmp, "haproxy.log")).read()[-3000:])
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

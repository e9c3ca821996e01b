#!/usr/bin/env python3
"""Hostile clients and a latency probe for the edge's public side (loopback only).

attack.py slow-readers N PUBLIC HOST PATH HOLD_S     N clients (SO_RCVBUF 4 KiB) GET PATH, never read
attack.py idle-tcp N ADDR NIPS HOLD_S                N idle TCP connections, source IPs 127.0.0.1..NIPS
attack.py slow-post N PUBLIC HOST NIPS HOLD_S         N POSTs declaring 10 MB, 1 byte every 8 s
attack.py probe PUBLIC HOST SECONDS                   a fresh-connection GET every 100 ms, 3 s timeout
"""
import socket, sys, time, threading

def conn(addr, src=None, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if src:
        s.bind((src, 0))
    s.settimeout(5)
    s.connect(addr)
    return s

def hp(a):
    h, p = a.rsplit(':', 1)
    return (h, int(p))

def alive(socks):
    """How many of socks the peer has not closed (non-blocking peek)."""
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            d = s.recv(1, socket.MSG_PEEK)
            if d:
                n += 1  # data pending: still open
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n

def hold(socks, secs, tick=None):
    end = time.time() + secs
    t0 = time.time()
    while time.time() < end:
        time.sleep(5)
        if tick:
            tick()
        print(f"  t={time.time()-t0:5.0f}s open={alive(socks)}/{len(socks)}", flush=True)

def main():
    mode = sys.argv[1]
    if mode == 'slow-readers':
        n, public, host, path, secs = int(sys.argv[2]), hp(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
        socks = []
        for _ in range(n):
            s = conn(public, rcvbuf=4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            socks.append(s)
        print(f"slow readers: {len(socks)} sent", flush=True)
        hold(socks, secs)
    elif mode == 'idle-tcp':
        n, addr, nips, secs = int(sys.argv[2]), hp(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        socks, failed = [], 0
        for i in range(n):
            try:
                socks.append(conn(addr, src=f"127.0.0.{1 + i % nips}"))
            except OSError:
                failed += 1
        time.sleep(2)
        print(f"idle tcp: {len(socks)} connected, {failed} failed, {alive(socks)} open after 2 s", flush=True)
        hold(socks, secs)
    elif mode == 'slow-post':
        n, public, host, nips, secs = int(sys.argv[2]), hp(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
        socks, failed = [], 0
        for i in range(n):
            try:
                s = conn(public, src=f"127.0.0.{1 + i % nips}")
                s.sendall(f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10000000\r\n\r\n".encode())
                socks.append(s)
            except OSError:
                failed += 1
        print(f"slow posts: {len(socks)} sent, {failed} failed", flush=True)
        def trickle():
            for s in socks:
                try:
                    s.send(b"x")
                except OSError:
                    pass
        # One byte every 8 s (hold() ticks every 5 s: close enough, and slower than any
        # minimum rate).
        hold(socks, secs, trickle)
    elif mode == 'probe':
        public, host, secs = hp(sys.argv[2]), sys.argv[3], float(sys.argv[4])
        t0 = time.time()
        res = []
        while time.time() - t0 < secs:
            t = time.time()
            ok = False
            status = None
            try:
                s = conn(public, src="127.0.0.200")
                s.settimeout(3)
                s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
                s.close()
                status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
                ok = status == 200
            except OSError:
                pass
            res.append((t - t0, ok, time.time() - t, status))
            time.sleep(max(0, 0.1 - (time.time() - t)))
        # Per 10 s window: successes, statuses, p99 of the successful ones.
        w = 0
        while w < secs:
            win = [r for r in res if w <= r[0] < w + 10]
            oks = sorted(r[2] for r in win if r[1])
            st = {}
            for r in win:
                st[r[3]] = st.get(r[3], 0) + 1
            p99 = oks[max(0, int(len(oks) * 0.99) - 1)] * 1000 if oks else float('nan')
            print(f"  probe {w:3.0f}-{w+10:3.0f}s: {len(oks)}/{len(win)} ok, p99 {p99:7.1f} ms, statuses {st}", flush=True)
            w += 10
    else:
        sys.exit(__doc__)

main()

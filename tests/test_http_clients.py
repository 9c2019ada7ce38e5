#!/usr/bin/python3
"""Real clients nobody here wrote against examples/hello_server, on both
engines: curl, Python's http.client, and aiohttp's client (Debian's
python3-aiohttp). Run by meson test: test_http_clients.py <hello_server>.

Checks the seed's promise (100 concurrent requests to a handler that
sleeps 0.5 s finish in about 0.5 s in all, not 50 s), exact bodies and
statuses, HEAD, 405 with Allow, keep-alive reuse, HTTP/1.0, and a clean
exit on SIGTERM with a request in flight."""
import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time

SERVER = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def start(engine, *args):
    env = dict(os.environ, CORU_IO=engine)
    p = subprocess.Popen([SERVER, "0", *args], stdout=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline()
    m = re.match(r"Server started at http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"hello_server did not start: {line!r}")
    return p, int(m.group(1))


def stop(p, engine):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
    check(rc == 0, f"{engine}: hello_server exit status {rc} after SIGTERM")


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def curl_tests(engine, port):
    base = f"http://127.0.0.1:{port}"
    rc, out, _ = curl(f"{base}/hello/curl")
    check(rc == 0 and out == "<h1>hello, curl</h1>", f"{engine}: curl /hello/curl -> {rc} {out!r}")
    rc, out, _ = curl(f"{base}/")
    check(rc == 0 and out == "<h1> Hello, World</h1>", f"{engine}: curl / -> {out!r}")
    rc, out, _ = curl("-i", f"{base}/hello/%C3%A9t%C3%A9")
    check("200 OK" in out and out.endswith("<h1>hello, \u00e9t\u00e9</h1>"), f"{engine}: curl percent-decoding -> {out!r}")
    rc, out, _ = curl("-I", f"{base}/hello/head")
    check("HTTP/1.1 200" in out and "Content-Length: 20" in out, f"{engine}: curl -I -> {out!r}")
    rc, out, _ = curl("-i", "-X", "POST", "-d", "x", f"{base}/")
    check("405" in out.split("\r\n")[0] and "Allow: GET, HEAD" in out, f"{engine}: curl POST / -> {out!r}")
    rc, out, _ = curl("-i", f"{base}/nothing/here")
    check(out.startswith("HTTP/1.1 404"), f"{engine}: curl 404 -> {out[:40]!r}")
    rc, out, _ = curl("--http1.0", f"{base}/hello/old")
    check(out == "<h1>hello, old</h1>", f"{engine}: curl --http1.0 -> {out!r}")
    # two URLs on one keep-alive connection
    rc, out, err = curl("-v", f"{base}/hello/a", f"{base}/hello/b")
    check(out == "<h1>hello, a</h1><h1>hello, b</h1>", f"{engine}: curl two URLs -> {out!r}")
    check("Re-using existing connection" in err or "Reusing existing connection" in err,
          f"{engine}: curl did not reuse the keep-alive connection")


def http_client_tests(engine, port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for name in ("x", "y", "z"):  # one connection, three requests
        c.request("GET", f"/hello/{name}")
        r = c.getresponse()
        body = r.read().decode()
        check(r.status == 200 and body == f"<h1>hello, {name}</h1>", f"{engine}: http.client {name} -> {r.status} {body!r}")
        check(r.getheader("Content-Type", "").startswith("text/html"), f"{engine}: Content-Type")
        check(r.getheader("Date") is not None and r.getheader("Server") == "coru", f"{engine}: Date/Server")
    c.close()
    # 100 concurrent requests, each handler sleeping 0.5 s
    results = []
    lock = threading.Lock()

    def one():
        cc = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cc.request("GET", "/hello/x")
        r = cc.getresponse()
        b = r.read()
        with lock:
            results.append((r.status, b))
        cc.close()

    t0 = time.monotonic()
    ths = [threading.Thread(target=one) for _ in range(100)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    took = time.monotonic() - t0
    check(len(results) == 100 and all(r == (200, b"<h1>hello, x</h1>") for r in results),
          f"{engine}: http.client x100 results {set(results)}")
    check(took < 5.0, f"{engine}: 100 concurrent requests took {took:.2f} s (should be about 0.5 s, not 50 s)")
    print(f"{engine}: http.client, 100 concurrent requests in {took:.2f} s", flush=True)


def aiohttp_tests(engine, port):
    try:
        import aiohttp
    except ImportError:
        check(False, "python3-aiohttp is not installed (tools/deps installs it)")
        return

    async def main():
        async with aiohttp.ClientSession() as s:
            async def get(name):
                async with s.get(f"http://127.0.0.1:{port}/hello/{name}") as r:
                    return r.status, await r.text()

            t0 = time.monotonic()
            res = await asyncio.gather(*(get(f"n{i}") for i in range(100)))
            took = time.monotonic() - t0
            ok = all(res[i] == (200, f"<h1>hello, n{i}</h1>") for i in range(100))
            check(ok, f"{engine}: aiohttp gather results wrong: {res[:3]}")
            check(took < 5.0, f"{engine}: aiohttp 100 concurrent took {took:.2f} s")
            print(f"{engine}: aiohttp, 100 concurrent requests in {took:.2f} s", flush=True)
            async with s.post(f"http://127.0.0.1:{port}/", data=b"x") as r:
                check(r.status == 405 and r.headers.get("Allow") == "GET, HEAD", f"{engine}: aiohttp POST -> {r.status}")

    asyncio.run(main())


def shutdown_test(engine):
    p, port = start(engine)
    got = {}

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/hello/inflight")
        r = c.getresponse()
        got["r"] = (r.status, r.read())

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)  # the handler is sleeping its 0.5 s
    p.send_signal(signal.SIGTERM)
    t.join()
    rc = p.wait(timeout=10)
    check(got.get("r") == (200, b"<h1>hello, inflight</h1>"), f"{engine}: in-flight request at SIGTERM -> {got}")
    check(rc == 0, f"{engine}: exit status {rc} after SIGTERM")


for engine in ("uring", "epoll"):
    p, port = start(engine, "--no-sleep")  # the exact-bytes checks need no sleep
    try:
        curl_tests(engine, port)
    finally:
        stop(p, engine)
    p, port = start(engine)  # the seed's server: each handler sleeps 0.5 s
    try:
        http_client_tests(engine, port)
        aiohttp_tests(engine, port)
    finally:
        stop(p, engine)
    shutdown_test(engine)

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all client checks passed")

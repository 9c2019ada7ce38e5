#!/usr/bin/python3
"""examples/crawler against servers nobody here wrote, on both engines:
aiohttp's web server (paths with different delays, gzip, chunked, a
redirect, statuses), Python's http.server (a file, a 404), nginx where
installed (a gzip-compressed file), and coru's own examples/hello_server. Run by meson test:
test_http_crawler.py <crawler> <hello_server>.

Checks every status and byte count, that the fetches finish in the order
of their delays (not of their start), that all ran at once (the total is
about the slowest one, not the sum), and the exit status."""
import asyncio
import gzip
import http.server
import os
import shutil
import re
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

from aiohttp import web

CRAWLER, HELLO = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


# ---- aiohttp server (its own thread and loop) ----
BIG = b"x" * 100000


async def delayed(request):
    ms = int(request.match_info["ms"])
    await asyncio.sleep(ms / 1000)
    return web.Response(text=f"slept {ms}")


async def status(request):
    return web.Response(status=int(request.match_info["code"]), text="s")


async def gz(request):
    body = gzip.compress(BIG)
    return web.Response(body=body, headers={"Content-Encoding": "gzip"})


async def chunked(request):
    r = web.StreamResponse()
    r.enable_chunked_encoding()
    await r.prepare(request)
    for i in range(10):
        await r.write(b"chunk%d;" % i)
        await asyncio.sleep(0.01)
    await r.write_eof()
    return r


async def redirect(request):
    raise web.HTTPFound("/delay/10")


def aiohttp_thread(ready):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = web.Application()
    app.add_routes([web.get("/delay/{ms}", delayed), web.get("/status/{code}", status), web.get("/gzip", gz),
                    web.get("/chunked", chunked), web.get("/redirect", redirect)])
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    ready.append(site._server.sockets[0].getsockname()[1])
    loop.run_forever()


def start_aiohttp():
    ready = []
    threading.Thread(target=aiohttp_thread, args=(ready,), daemon=True).start()
    while not ready:
        time.sleep(0.01)
    return ready[0]


# ---- Python's http.server ----
def start_http_server(root):
    handler_cls = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), lambda *a, **k: handler_cls(*a, directory=root, **k))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


NGINX_CONF = """daemon off; worker_processes 1; error_log {dir}/error.log; pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  gzip on; gzip_min_length 0; gzip_types text/plain;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""


def start_nginx(root):
    """nginx where installed: a static file, gzip on (the client decodes it)."""
    if not shutil.which("nginx"):
        print("nginx not installed: its part skipped")
        return None, None
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=d, port=port, root=root))
    p = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    return None, None


def start_hello(engine):
    p = subprocess.Popen([HELLO, "0"], stdout=subprocess.PIPE, env=dict(os.environ, CORU_IO=engine), text=True)
    m = re.match(r"Server started at http://127\.0\.0\.1:(\d+)", p.stdout.readline())
    if not m:
        p.kill()
        raise SystemExit("hello_server did not start")
    return p, int(m.group(1))


def run(engine, aio, hs, hello, ngx):
    cases = [  # url, status, bytes, delay rank (None: not ranked)
        (f"http://127.0.0.1:{aio}/delay/600", 200, len("slept 600"), 600),
        (f"http://127.0.0.1:{aio}/delay/50", 200, len("slept 50"), 50),
        (f"http://127.0.0.1:{aio}/delay/300", 200, len("slept 300"), 300),
        (f"http://127.0.0.1:{aio}/status/404", 404, 1, None),
        (f"http://127.0.0.1:{aio}/status/503", 503, 1, None),
        (f"http://127.0.0.1:{aio}/gzip", 200, len(BIG), None),
        (f"http://127.0.0.1:{aio}/chunked", 200, 70, None),
        (f"http://127.0.0.1:{aio}/redirect", 200, len("slept 10"), None),
        (f"http://127.0.0.1:{hs}/page.html", 200, 11, None),
        (f"http://127.0.0.1:{hs}/missing.html", 404, None, None),
        (f"http://127.0.0.1:{hello}/hello/crawler", 200, len("<h1>hello, crawler</h1>"), 500),
    ]
    if ngx:
        cases += [(f"http://127.0.0.1:{ngx}/big.txt", 200, 50000, None),
                  (f"http://127.0.0.1:{ngx}/nothing", 404, None, None)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("# URLs\n\n" + "\n".join(c[0] for c in cases) + "\n")
        listfile = f.name
    t0 = time.monotonic()
    r = subprocess.run([CRAWLER, "-f", listfile], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, CORU_IO=engine))
    wall = time.monotonic() - t0
    os.unlink(listfile)
    out = r.stdout.splitlines()
    check(r.returncode == 0, f"{engine}: crawler exit {r.returncode}: {r.stderr}")
    starts = [l[len("starting: "):] for l in out if l.startswith("starting: ")]
    done = {}
    order = []
    for l in out:
        m = re.match(r"(\S+) : (\d+) \((\d+) bytes, (\d+) ms\)$", l)
        if m:
            done[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            order.append(m.group(1))
    check(sorted(starts) == sorted(c[0] for c in cases), f"{engine}: started {starts}")
    for url, st, n, _ in cases:
        got = done.get(url)
        check(got is not None and got[0] == st and (n is None or got[1] == n), f"{engine}: {url} -> {got}, want {st} {n}")
    ranked = sorted((c for c in cases if c[3] is not None), key=lambda c: c[3])
    pos = [order.index(c[0]) for c in ranked if c[0] in order]
    check(pos == sorted(pos), f"{engine}: finish order {order} not by delay")
    check(order != starts, f"{engine}: finished in start order")
    n = len(cases)
    check(any(l.startswith(f"total: {n} URLs, {n} ok, 0 failed") for l in out), f"{engine}: total line in {out[-1:]}")
    check(wall < 3.0, f"{engine}: took {wall:.1f} s: the fetches did not run at once")


def main():
    root = tempfile.mkdtemp()
    os.chmod(root, 0o755)  # nginx's workers may run as nobody
    with open(os.path.join(root, "page.html"), "w") as f:
        f.write("hello, page")
    with open(os.path.join(root, "big.txt"), "w") as f:
        f.write("0123456789" * 5000)
    aio, hs = start_aiohttp(), start_http_server(root)
    np, ngx = start_nginx(root)
    try:
        for engine in ("uring", "epoll"):
            p, hello = start_hello(engine)
            try:
                run(engine, aio, hs, hello, ngx)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
    finally:
        if np:
            np.terminate()
            np.wait(timeout=10)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("crawler: all checks passed")


main()

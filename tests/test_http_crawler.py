#!/usr/bin/python3
"""examples/crawler against servers nobody here wrote, on both engines:
aiohttp's web server (paths with different delays, gzip, chunked, a
redirect, statuses), Python's http.server (a file, a 404), nginx where
installed (a gzip-compressed file), and coru's own examples/hello_server.
Then https:// (crawler --cafile, certificates made by `openssl req` here):
aiohttp over its ssl context (the same routes, and a redirect from its
plain site to its TLS one), Python's http.server behind
ssl.SSLContext(PROTOCOL_TLS_SERVER), and `openssl s_server -WWW` (files,
each connection ended by close_notify); an unknown CA without --cafile,
and --insecure. Run by meson test:
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
import socket
import socketserver
import ssl
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


async def to_https(request):  # from the plain site to the TLS one
    raise web.HTTPFound(f"https://127.0.0.1:{request.app['ports']['tls']}/delay/10")


def aiohttp_thread(ready, tls_ctx):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = web.Application()
    app.add_routes([web.get("/delay/{ms}", delayed), web.get("/status/{code}", status), web.get("/gzip", gz),
                    web.get("/chunked", chunked), web.get("/redirect", redirect), web.get("/to-https", to_https)])
    app["ports"] = ports = {}  # filled once the sites listen
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    tls_site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_ctx)
    loop.run_until_complete(tls_site.start())
    ports["tls"] = tls_site._server.sockets[0].getsockname()[1]
    ready.append((site._server.sockets[0].getsockname()[1], ports["tls"]))
    loop.run_forever()


def start_aiohttp(tls_ctx):
    """The plain port and the TLS one (the same app)."""
    ready = []
    threading.Thread(target=aiohttp_thread, args=(ready, tls_ctx), daemon=True).start()
    while not ready:
        time.sleep(0.01)
    return ready[0]


# ---- Python's http.server (over ssl when tls_ctx is given) ----
def start_http_server(root, tls_ctx=None):
    handler_cls = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), lambda *a, **k: handler_cls(*a, directory=root, **k))
    srv.daemon_threads = True
    if tls_ctx:
        # the handshake runs in accept(); a failed one is an OSError there,
        # which socketserver drops
        srv.socket = tls_ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


# ---- certificates and openssl s_server ----
def make_certs(d):
    """A CA and a server certificate for localhost and 127.0.0.1 signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=coru-crawler-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "srv.ext", "-out", "srv.pem")
    return os.path.join(d, "ca.pem"), os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """Whether something accepts on 127.0.0.1:port within 5 s."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_s_server(root, cert, key):
    """openssl s_server -WWW: files of root, HTTP/1.0, one connection at a
    time, each ended by close_notify (the body runs to the end of the
    stream)."""
    port = free_port()
    p = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert, "-key", key, "-WWW",
                          "-quiet"], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    if listening(port):
        return p, port
    p.kill()
    raise SystemExit("openssl s_server did not start")


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
    port = free_port()
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=d, port=port, root=root))
    p = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")])
    if listening(port):
        return p, port
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


def crawl(engine, args, urls):
    r = subprocess.run([CRAWLER, *args, *urls], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, CORU_IO=engine))
    done = {}
    for l in r.stdout.splitlines():
        m = re.match(r"(\S+) : (\d+) \((\d+) bytes, (\d+) ms\)$", l) or re.match(r"(\S+) : (error: .*)$", l)
        if m:
            done[m.group(1)] = (int(m.group(2)), int(m.group(3))) if len(m.groups()) == 4 else m.group(2)
    return r, done


def run_https(engine, ca, aio, aio_tls, hs_tls, ssrv):
    """https:// through the same crawler: every server here, by --cafile."""
    cases = [  # url, status, bytes
        (f"https://127.0.0.1:{aio_tls}/delay/300", 200, len("slept 300")),
        (f"https://127.0.0.1:{aio_tls}/delay/50", 200, len("slept 50")),
        (f"https://127.0.0.1:{aio_tls}/status/404", 404, 1),
        (f"https://127.0.0.1:{aio_tls}/gzip", 200, len(BIG)),
        (f"https://127.0.0.1:{aio_tls}/chunked", 200, 70),
        (f"https://localhost:{aio_tls}/redirect", 200, len("slept 10")),
        (f"http://127.0.0.1:{aio}/to-https", 200, len("slept 10")),
        (f"https://127.0.0.1:{hs_tls}/page.html", 200, 11),
        (f"https://localhost:{hs_tls}/missing.html", 404, None),
        (f"https://127.0.0.1:{ssrv}/page.html", 200, 11),
        (f"https://127.0.0.1:{ssrv}/big.txt", 200, 50000),
    ]
    r, done = crawl(engine, ["--cafile", ca], [c[0] for c in cases])
    check(r.returncode == 0, f"{engine} https: crawler exit {r.returncode}: {r.stdout} {r.stderr}")
    for url, st, n in cases:
        got = done.get(url)
        check(isinstance(got, tuple) and got[0] == st and (n is None or got[1] == n),
              f"{engine} https: {url} -> {got}, want {st} {n}")
    # without --cafile: the system store knows not our CA
    url = f"https://127.0.0.1:{hs_tls}/page.html"
    r, done = crawl(engine, [], [url])
    check(r.returncode == 1 and "no trusted CA" in str(done.get(url)), f"{engine} https, unknown CA: {r.stdout}")
    r, done = crawl(engine, ["--insecure"], [url, f"https://127.0.0.1:{ssrv}/page.html"])
    check(r.returncode == 0 and done.get(url) == (200, 11), f"{engine} https, --insecure: {r.stdout}")


def main():
    root = tempfile.mkdtemp()
    os.chmod(root, 0o755)  # nginx's workers may run as nobody
    with open(os.path.join(root, "page.html"), "w") as f:
        f.write("hello, page")
    with open(os.path.join(root, "big.txt"), "w") as f:
        f.write("0123456789" * 5000)
    certs = tempfile.mkdtemp()
    ca, cert, key = make_certs(certs)
    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ctx.load_cert_chain(cert, key)
    (aio, aio_tls), hs = start_aiohttp(tls_ctx), start_http_server(root)
    hs_tls = start_http_server(root, tls_ctx)
    sp, ssrv = start_s_server(root, cert, key)
    np, ngx = start_nginx(root)
    try:
        for engine in ("uring", "epoll"):
            p, hello = start_hello(engine)
            try:
                run(engine, aio, hs, hello, ngx)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
            run_https(engine, ca, aio, aio_tls, hs_tls, ssrv)
    finally:
        if np:
            np.terminate()
            np.wait(timeout=10)
        sp.terminate()
        sp.wait(timeout=10)
        shutil.rmtree(certs, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("crawler: all checks passed")


main()

#!/usr/bin/env python3
"""Real TLS clients nobody here wrote against coru's HTTPS server
(examples/hello_server --cert/--key), on both I/O engines: curl, Python's
ssl with http.client, and openssl s_client. Certificates are made here by
`openssl req` (a CA and two server certificates signed by it).

    test_https_server.py path/to/hello_server

Checks: bodies and statuses byte for byte, keep-alive over one TLS
connection, TLS 1.3 by default and 1.2 when the client caps it, ALPN
http/1.1 chosen from h2,http/1.1 and a client offering only h2 refused,
an untrusted certificate refused by curl, garbage instead of a
ClientHello answered by a close and the server still serving, and a
certificate reload on SIGHUP (new connections get the new certificate,
an open connection keeps going)."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import http.client

SERVER = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=60, **kw)


def make_certs(d):
    def req(*args):
        r = run("openssl", *args, cwd=d)
        if r.returncode != 0:
            sys.exit("openssl %s failed: %s" % (args[0], r.stderr.decode()))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    req("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=coru test CA",
        "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san in (("srv", "DNS:localhost,IP:127.0.0.1"), ("other", "DNS:other.example")):
        req("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:false\n" % san)
        req("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            str(abs(hash(name)) % 100000), "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")


def start(d, engine):
    shutil.copy(os.path.join(d, "srv.pem"), os.path.join(d, "live.pem"))
    shutil.copy(os.path.join(d, "srv.key"), os.path.join(d, "live.key"))
    env = dict(os.environ, CORU_IO=engine)
    p = subprocess.Popen([SERVER, "0", "--no-sleep", "--cert", os.path.join(d, "live.pem"), "--key",
                          os.path.join(d, "live.key")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = p.stdout.readline().decode()
    if not line.startswith("Server started at https://127.0.0.1:"):
        p.kill()
        sys.exit("hello_server did not start over TLS: %r %s" % (line, p.stderr.read().decode()))
    return p, int(line.rsplit(":", 1)[1])


def ctx(d, **kw):
    c = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def cases(d, port, engine):
    tag = "[%s] " % engine
    ca = os.path.join(d, "ca.pem")
    base = "https://localhost:%d" % port

    # curl: verified against the CA, HTTP/1.1 over ALPN (curl offers h2 too)
    r = run("curl", "-sS", "--cacert", ca, "-w", "\n%{http_code} %{http_version} %{ssl_verify_result}",
            base + "/hello/curl")
    out = r.stdout.decode()
    check(r.returncode == 0 and out == "<h1>hello, curl</h1>\n200 1.1 0", tag + "curl GET: %r %s" % (out, r.stderr))
    # several URLs on one connection (curl reuses it), a 404 among them
    r = run("curl", "-sS", "--cacert", ca, "-w", "[%{http_code}]", base + "/", base + "/nope", base + "/hello/b")
    check(r.stdout.decode() == "<h1> Hello, World</h1>[200]404 Not Found\n[404]<h1>hello, b</h1>[200]",
          tag + "curl keep-alive: %r" % r.stdout)
    check(b"Re-using existing connection" in run("curl", "-sSv", "--cacert", ca, base + "/", base + "/").stderr,
          tag + "curl did not reuse its TLS connection")
    # an untrusted certificate is refused by curl (exit 60: peer certificate cannot be authenticated)
    r = run("curl", "-sS", base + "/")
    check(r.returncode == 60, tag + "curl without the CA: exit %d" % r.returncode)

    # Python ssl + http.client: keep-alive, TLS 1.3, ALPN
    c = ctx(d)
    c.set_alpn_protocols(["h2", "http/1.1"])
    h = http.client.HTTPSConnection("localhost", port, context=c, timeout=10)
    for i in range(5):
        h.request("GET", "/hello/py%d" % i)
        resp = h.getresponse()
        body = resp.read()
        check(resp.status == 200 and body == b"<h1>hello, py%d</h1>" % i, tag + "python GET %d: %r" % (i, body))
    check(h.sock.version() == "TLSv1.3", tag + "python version %s" % h.sock.version())
    check(h.sock.selected_alpn_protocol() == "http/1.1", tag + "python alpn %s" % h.sock.selected_alpn_protocol())
    keep = h  # stays open across the reload below

    # TLS 1.2 when the client goes no higher
    c12 = ctx(d)
    c12.maximum_version = ssl.TLSVersion.TLSv1_2
    h12 = http.client.HTTPSConnection("127.0.0.1", port, context=c12, timeout=10)
    h12.request("GET", "/")
    check(h12.getresponse().read() == b"<h1> Hello, World</h1>" and h12.sock.version() == "TLSv1.2",
          tag + "TLS 1.2 client")
    h12.close()

    # only h2 offered: the server has no protocol in common (RFC 7301 alert)
    ch2 = ctx(d)
    ch2.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ch2.wrap_socket(s, server_hostname="localhost"):
                check(False, tag + "an h2-only client was served")
    except ssl.SSLError as e:
        check("NO APPLICATION PROTOCOL" in str(e).upper().replace("_", " "), tag + "h2-only client: %s" % e)

    # garbage instead of a ClientHello: the server closes, and goes on serving
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:  # closed with our bytes unread
                break
            if not chunk:
                break
            got += chunk
        check(time.monotonic() - t0 < 5, tag + "plain HTTP on the TLS port was not closed")
        check(b"Hello" not in got, tag + "plain HTTP on the TLS port was answered in clear")

    # openssl s_client: verified, ALPN http/1.1, a request with Connection: close
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost", "-CAfile", ca,
            "-verify_return_error", "-alpn", "http/1.1", "-quiet", "-ign_eof",
            input=b"GET /hello/sc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 0 and out.startswith("HTTP/1.1 200 OK") and out.endswith("<h1>hello, sc</h1>"),
          tag + "s_client: rc %d %r %s" % (r.returncode, out[-200:], r.stderr[-300:]))

    # TLS 1.3 key updates mid-connection (s_client's K: update and ask the
    # server to update too, so the server's read has to write; k: update
    # ours only): requests before and after are answered
    sc = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                           "-CAfile", ca, "-verify_return_error"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    for step in (b"GET /hello/k0 HTTP/1.1\r\nHost: x\r\n\r\n", b"K\n", b"GET /hello/k1 HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"k\n", b"GET /hello/k2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        time.sleep(0.3)
        sc.stdin.write(step)
        sc.stdin.flush()
    time.sleep(0.5)  # s_client quits at the end of its input: let the last answer arrive first
    try:
        out, err = sc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        sc.kill()
        out, err = sc.communicate()
    out = out.decode(errors="replace")
    check(err.count(b"KEYUPDATE") == 2 and all("<h1>hello, k%d</h1>" % i in out for i in range(3)),
          tag + "key updates: %r %r" % (out[-300:], err[-300:]))
    return keep


def reload_case(d, p, port, keep, engine):
    tag = "[%s] " % engine
    shutil.copy(os.path.join(d, "other.pem"), os.path.join(d, "live.pem"))
    shutil.copy(os.path.join(d, "other.key"), os.path.join(d, "live.key"))
    p.send_signal(signal.SIGHUP)
    # new handshakes get the new certificate (for other.example, not localhost)
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with ctx(d).wrap_socket(s, server_hostname="other.example") as t:
                    seen = t.getpeercert()["subjectAltName"]
                    break
        except ssl.SSLCertVerificationError:
            time.sleep(0.05)
    check(seen == (("DNS", "other.example"),), tag + "after SIGHUP: %r" % (seen,))
    # the connection opened before the reload keeps working
    keep.request("GET", "/hello/still")
    check(keep.getresponse().read() == b"<h1>hello, still</h1>", tag + "open connection after reload")
    keep.close()


def main():
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            sys.exit("%s not installed (tools/deps installs it)" % tool)
    d = tempfile.mkdtemp(prefix="coru-https-")
    try:
        make_certs(d)
        for engine in ("uring", "epoll"):
            p, port = start(d, engine)
            try:
                keep = cases(d, port, engine)
                reload_case(d, p, port, keep, engine)
            finally:
                p.send_signal(signal.SIGTERM)
                try:
                    rc = p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = -1
                check(rc == 0, "[%s] hello_server exit %s: %s" % (engine, rc, p.stderr.read().decode()[-500:]))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        sys.exit("%d failure(s)" % len(failures))
    print("ok: curl, python ssl and s_client against the HTTPS server on both engines")


main()

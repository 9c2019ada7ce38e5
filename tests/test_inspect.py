#!/usr/bin/env python3
"""examples/inspect as a user runs it, on both I/O engines: the dump it
prints of its pipeline, the stall report of --stall (name, worker,
backtrace through crunch and worker), the deadlock report of --deadlock
(all 7 coroutines, the grouped dump, SIGABRT), and kill -QUIT on --wait
(the dump on stderr, the process still running until its deadline is cut
short by SIGTERM).

    test_inspect.py path/to/inspect"""
import os
import re
import signal
import subprocess
import sys
import time

PROG = sys.argv[1]
failures = []


def check(cond, what, out=""):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
        if out:
            print(out, file=sys.stderr)


for engine in ("uring", "epoll"):
    env = dict(os.environ, CORU_IO=engine)
    env.pop("CORU_STALL_MS", None)
    env.pop("CORU_DEADLOCK", None)

    r = subprocess.run([PROG], capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == 0, f"{engine}: plain run exits 0", r.stderr)
    check("coroutine 1 \"main\" [main_co] running on worker " in r.stdout, f"{engine}: main in the dump", r.stdout)
    # the sink is parked or (it was just woken) runnable; the closer waits until the end
    check("coroutine 6 \"sink\" [sink] " in r.stdout, f"{engine}: the sink in the dump", r.stdout)
    check("\"closer\" [closer] parked " in r.stdout and ": waitgroup 0x" in r.stdout,
          f"{engine}: closer on the wait group", r.stdout)
    check("spawned at main_co+0x" in r.stdout, f"{engine}: spawn sites named", r.stdout)
    # the three workers share a spawn site (their states may differ)
    grouped = r.stdout.split("--- grouped")[-1]
    m = re.search(r'"worker-0" \[worker\] .*spawned at (main_co\+0x[0-9a-f]+) ', r.stdout)
    site = m.group(1) if m else "?"
    counts = [int(l.split(" x ")[0]) for l in grouped.splitlines() if " x " in l and site + " " in l]
    check(sum(counts) == 3, f"{engine}: the three workers in the grouped dump", r.stdout)
    check("inspect: total 1001000 (want 1001000)" in r.stdout, f"{engine}: total", r.stdout)
    check("coru: stall" not in r.stderr and "deadlock" not in r.stderr, f"{engine}: no report", r.stderr)

    r = subprocess.run([PROG, "--stall"], capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == 0, f"{engine}: --stall exits 0", r.stderr)
    check(r.stderr.count("coru: stall: coroutine ") == 1, f"{engine}: one stall report", r.stderr)
    check("\"worker-" in r.stderr and "without parking or yielding (threshold 100 ms)" in r.stderr,
          f"{engine}: stall names the worker coroutine", r.stderr)
    check("inspect(crunch+0x" in r.stderr and "inspect(worker+0x" in r.stderr,
          f"{engine}: stall backtrace through crunch and worker", r.stderr)

    r = subprocess.run([PROG, "--deadlock"], capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == -signal.SIGABRT, f"{engine}: --deadlock aborts (rc {r.returncode})", r.stderr)
    check("coru: deadlock: all 7 coroutines are parked and nothing can wake them" in r.stderr,
          f"{engine}: deadlock report", r.stderr)
    check("3 x parked: chan send; spawned at main_co+0x" in r.stderr, f"{engine}: grouped deadlock dump", r.stderr)

    p = subprocess.Popen([PROG, "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    check(line.startswith("inspect: pid "), f"{engine}: --wait starts", line)
    time.sleep(0.1)
    p.send_signal(signal.SIGQUIT)
    time.sleep(0.5)
    check(p.poll() is None, f"{engine}: still running after SIGQUIT")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    check("coru: dump (signal)" in err and "\"waits-forever\" [main_co] parked " in err
          and ": chan recv 0x" in err and ", deadline in 59." in err, f"{engine}: SIGQUIT dump", err)
    check("deadlock" not in err, f"{engine}: a deadline is not a deadlock", err)

if failures:
    print(f"{len(failures)} failures", file=sys.stderr)
    sys.exit(1)
print("test_inspect: all checks passed")

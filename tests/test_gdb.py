#!/usr/bin/env python3
"""tools/coru-gdb.py in gdb, on tests/gdb_target stopped at
gdbt_all_parked with four coroutines parked (a channel receive, a sleep,
a join, a semaphore) and the main one running:
  - live: `coru list` names every coroutine with its state, wait, parent
    and spawn site, and `coru bt all` gives each parked one a backtrace
    through its own function down to coru's entry frames;
  - the same on a core file written by gdb's generate-core-file (with
    CORU_NO_GUARD_MADVISE=1: gdb cannot copy a mapping that holds guard
    markers, see README), and on the kernel's own core dump when
    core_pattern writes a plain file;
  - `coru select` makes plain `bt` walk a coroutine's stack;
  - clear errors without debug info and outside a coru program.
The target alone must exit 0 too.

    test_gdb.py path/to/gdb_target path/to/coru-gdb.py"""
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

PROG, SCRIPT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = []


def check(cond, what, out=""):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
        if out:
            print(out, file=sys.stderr)


GDB = shutil.which("gdb")
if not GDB:
    print("FAIL: gdb is not installed (tools/deps installs it: apt-get install gdb)", file=sys.stderr)
    sys.exit(1)

# The sanitizer builds (tools/test runs the suite in them too): their
# shadow memory is terabytes of mappings, which gdb's generate-core-file
# tries to copy (it does not finish) and which the sanitizers keep out of
# the kernel's core dumps (disable_coredump); only the live checks run.
SYMS = subprocess.run(["nm", PROG], capture_output=True, text=True).stdout
SANITIZER = "ASan" if "__asan_init" in SYMS else "TSan" if "__tsan_init" in SYMS else None


def run_gdb(args, env=None, cwd=None, limit_core=False, timeout=60):
    cmd = [GDB, "-batch", "-nx", "-iex", "set debuginfod enabled off", "-iex", "set width 0",
           "-iex", "set height 0"] + args

    def pre():
        if limit_core:
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                       preexec_fn=pre)
    return r.stdout + r.stderr


def ex(*cmds):
    out = []
    for c in cmds:
        out += ["-ex", c]
    return out


LIVE = ex("break gdbt_all_parked", "run", "source " + SCRIPT, "coru list", "coru bt all")

# What each parked coroutine's line says after its name, and the frames
# its backtrace must hold (innermost first).
PARKED = {
    "chan-waiter": ('"chan-waiter" [gdbt_wait_on_channel] parked', r"chan recv 0x[0-9a-f]+",
                    ["coru_chan_recv", "gdbt_wait_on_channel"]),
    "sleeper": ('"sleeper" [gdbt_sleeping] parked', r"sleep(, [0-9.]+ s left| until [0-9.]+ s \(monotonic clock\))",
                ["coru_sleep", "gdbt_sleeping"]),
    "joiner": ('"joiner" [gdbt_joining] parked', r"join coroutine (\d+)", ["coru_join", "gdbt_joining"]),
    "sema": ("[gdbt_on_sema] parked", r"sema 0x[0-9a-f]+", ["coru_sema_acquire", "gdbt_on_sema"]),
}
ENTRY = ["coru__co_entry", "ctx_entry"]  # the outermost frames of every coroutine


def blocks(out):
    """{coroutine id: [its header line and the lines after it]}, keeping
    for each id its longest block (the `coru bt` one)."""
    res, cur = {}, None
    for ln in out.splitlines():
        m = re.match(r"^coroutine (\d+) ", ln)
        if m:
            cur = [ln]
            i = int(m.group(1))
            if len(res.get(i, [])) <= 1:
                res[i] = cur
        elif cur is not None:
            cur.append(ln)
            if ln.startswith("(its innermost") or not ln.strip():
                cur = None
    return res


def check_session(out, where):
    """The `coru list` and `coru bt all` of a stopped gdb_target."""
    check("Python Exception" not in out and "coru: unwinder" not in out, f"{where}: no Python errors", out)
    check("5 coroutines: 1 running, 0 runnable, 4 parked; 2 workers" in out, f"{where}: the summary", out)
    check(re.search(r'^coroutine 1 "gdb-main" \[gdbt_main\] running on worker [01] \(thread \d+\); '
                    r"parent 0; spawned at main\+0x[0-9a-f]+ \(gdb_target\.c:\d+\)$", out, re.M),
          f"{where}: main running on a worker", out)
    ids = {}
    for key, (head, wait, frames) in PARKED.items():
        m = re.search(r"^coroutine (\d+) " + re.escape(head) + r"(?: [0-9.]+ s)?: " + wait +
                      r"; parent 1; spawned at gdbt_main\+0x[0-9a-f]+ \(gdb_target\.c:\d+\)$", out, re.M)
        check(m, f"{where}: {key} listed as parked on what it waits for", out)
        if m:
            ids[key] = int(m.group(1))
            if key == "joiner":
                ids["joined"] = int(m.group(2))
    check(ids.get("joined") == ids.get("chan-waiter"), f"{where}: the joiner joins the chan-waiter", out)
    check(len(set(ids.get(k) for k in PARKED)) == 4 and 1 not in ids.values(), f"{where}: distinct ids", out)
    bl = blocks(out)
    check("running: its stack is worker" in "\n".join(bl.get(1, [])), f"{where}: bt of main says running", out)
    for key, (head, wait, frames) in PARKED.items():
        if key not in ids:
            continue
        b = bl.get(ids[key], [])
        fr = [ln for ln in b if re.match(r"^#\d+ ", ln)]
        text = "\n".join(fr)
        check(fr and fr[0].startswith("#0 "), f"{where}: {key}'s backtrace starts at #0", "\n".join(b))
        check("gdbt_all_parked" not in text, f"{where}: {key}'s backtrace is not the thread's", "\n".join(b))
        # all known down to ctx_entry (below it, -Dctx=ucontext builds have
        # libc's __start_context, without a symbol)
        inner = "\n".join(fr[:next((i for i, ln in enumerate(fr) if " ctx_entry (" in ln), len(fr))])
        check(" ?? (" not in inner and [int(ln[1:].split()[0]) for ln in fr] == list(range(len(fr))),
              f"{where}: {key}'s frames all known and numbered in order", "\n".join(b))
        if "coru__ctx_start" in SYMS:  # the assembly switch: the stack ends there
            check(fr and " coru__ctx_start (" in fr[-1], f"{where}: {key}'s last frame is coru__ctx_start",
                  "\n".join(b))
        # a name also matches its _dl or _until variant: a tail call may
        # leave out the short one's frame (coru_sleep -> coru_sleep_until)
        pos = [next((i for i, ln in enumerate(fr) if re.search(r"\b%s\w* \(" % f, ln)), -1)
               for f in frames + ENTRY]
        check(all(p >= 0 for p in pos) and pos == sorted(pos),
              f"{where}: {key}'s backtrace runs through {', '.join(frames + ENTRY)} in order", "\n".join(b))
        check(re.search(r"gdb_target\.c:\d+", text), f"{where}: {key}'s frames have lines", "\n".join(b))
    return ids


# The target alone: it parks everything, wakes it all, exits 0.
r = subprocess.run([PROG], capture_output=True, text=True, timeout=60)
check(r.returncode == 0 and "gdb_target: ok" in r.stdout, "gdb_target alone exits 0", r.stdout + r.stderr)

with tempfile.TemporaryDirectory(prefix="coru-gdb-") as tmp:
    # Live, as built (stacks in slabs with guard markers where the kernel
    # has MADV_GUARD_INSTALL).
    out = run_gdb(LIVE + ex("kill") + [PROG])
    if SANITIZER == "TSan" and "Breakpoint 1, gdbt_all_parked" not in out:
        print("SKIP: gdb_target does not reach its breakpoint under TSan in gdb:\n" + out[-2000:])
        sys.exit(77)
    check("Breakpoint 1, gdbt_all_parked" in out, "live: the breakpoint is hit", out)
    ids = check_session(out, "live")

    # Live again, without guard markers, and gdb's core of it.
    gcore = os.path.join(tmp, "gdb.core")
    env = dict(os.environ, CORU_NO_GUARD_MADVISE="1")
    if SANITIZER:
        out = run_gdb(LIVE + ex("kill") + [PROG], env=env)
    else:
        out = run_gdb(LIVE + ex("generate-core-file " + gcore, "kill") + [PROG], env=env)
        check(os.path.exists(gcore), "generate-core-file wrote the core", out)
    check_session(out, "live (no guard markers)")
    if SANITIZER:
        print(f"test_gdb: {SANITIZER} build: core files not checked (sanitizer shadow memory)")
    if os.path.exists(gcore):
        sl = ids.get("sleeper", 3)
        out = run_gdb(ex("source " + SCRIPT, "coru list", "coru bt all", f"coru select {sl}", "bt",
                         "coru select none", "bt") + [PROG, gcore])
        check_session(out, "gdb's core")
        # the two bt after `coru select`: each starts at the thread's #0
        after = out.split("(its innermost frame is #1", 1)[-1]
        bts = re.split(r"^(?=#0 )", after, flags=re.M)[1:]
        sel, back = (bts + ["", ""])[:2]
        check(sel.startswith("#0  gdbt_all_parked"), "coru select: #0 stays the thread's", out)
        check(re.search(r"^#[1-9]\d* .*gdbt_sleeping \(", sel, re.M) and " ctx_entry (" in sel,
              "coru select: bt walks the sleeper's stack", out)
        check(re.search(r"^#1 .* gdbt_main \(", back, re.M), "coru select none: bt is the thread's again", out)

    # The kernel's core dump (SIGABRT at the breakpoint), guard markers and
    # all, when core_pattern writes a file into the working directory.
    try:
        pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    except OSError:
        pattern = "|"
    if SANITIZER:
        pass
    elif pattern.startswith("|") or "/" in pattern:
        print(f"test_gdb: kernel core dump not checked (core_pattern is {pattern!r})")
    else:
        kdir = os.path.join(tmp, "kernel")
        os.mkdir(kdir)
        out = run_gdb(ex("break gdbt_all_parked", "run", "signal SIGABRT") + [PROG], cwd=kdir, limit_core=True)
        cores = [f for f in os.listdir(kdir) if f.startswith("core")]
        if not cores:
            print("test_gdb: the kernel wrote no core dump (limits?); not checked")
        else:
            out = run_gdb(ex("source " + SCRIPT, "coru list", "coru bt all") + [PROG, os.path.join(kdir, cores[0])])
            check_session(out, "kernel core")

    # Without debug info: a clear error, no traceback.
    bare = os.path.join(tmp, "gdb_target-nodebug")
    subprocess.run(["objcopy", "--strip-debug", PROG, bare], check=True)
    out = run_gdb(ex("break gdbt_all_parked", "run", "source " + SCRIPT, "coru list", "kill") + [bare])
    check("coru__registry is in the program but it has no debug info" in out and "Traceback" not in out,
          "no debug info: said so", out)

    # Not a coru program.
    out = run_gdb(ex("source " + SCRIPT, "coru list") + ["/bin/true"])
    check("no symbol coru__registry: not a coru program" in out and "Traceback" not in out,
          "not a coru program: said so", out)

if failures:
    print(f"{len(failures)} failures", file=sys.stderr)
    sys.exit(1)
print("test_gdb: all checks passed")

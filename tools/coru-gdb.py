# coru-gdb.py - gdb commands for programs built on coru.
#
#   (gdb) source tools/coru-gdb.py
#   (gdb) coru list              every live coroutine, one line each
#   (gdb) coru bt ID [ID...]     backtraces of those coroutines
#   (gdb) coru bt all            backtraces of every live coroutine
#   (gdb) coru bt full ID|all    the same with locals (bt full)
#   (gdb) coru select ID         make `bt`, `frame N`, `info locals` show
#                                coroutine ID's stack until `coru select none`
#                                (or until the program runs again)
#
# Works on a live process and on a core file alike: it only reads memory
# and symbols, never calls a function in the program. The data:
#   - coru__registry (src/sched/registry.c): the chunks of coroutine
#     structs; a slot [0, carved) whose id is not 0 and whose wait kind is
#     not CORU__W_EXITED is a live coroutine (src/sched/registry.h).
#   - coru__rt (src/sched/rt.h; formerly a static `rt` in sched.c): the
#     workers, each with cur_pub, the coroutine it runs now.
#   - A coroutine that is not running has its registers saved on its own
#     stack by coru__ctx_swap (src/sched/ctx_x86_64.S, ctx_aarch64.S) and
#     the stack pointer in co->ctx.sp. Its backtrace comes from a frame
#     unwinder (below) that makes the selected thread's innermost frame
#     return into that saved frame; gdb's DWARF unwinding then walks the
#     coroutine's stack as usual.
# Needs the program's debug info (the types of struct coru_co and of the
# registry); without it, it says so. Keep the field names in step with
# src/sched/registry.h, sched.h, rt.h and ctx.h.

import re
import struct
import time

import gdb
import gdb.unwinder


class CoruError(Exception):
    pass


# ---------------------------------------------------------------- symbols


def _var(name, files=()):
    """The value of a global or file-static variable, or None if the
    program has no such symbol. Raises CoruError when the symbol exists
    without debug info."""
    for look in (gdb.lookup_global_symbol, gdb.lookup_static_symbol):
        try:
            sym = look(name)
        except gdb.error:
            sym = None
        if sym is not None and sym.is_variable:
            return sym.value()
    for f in files:
        try:
            return gdb.parse_and_eval("'%s'::%s" % (f, name))
        except gdb.error:
            pass
    try:
        v = gdb.parse_and_eval("&" + name)
    except gdb.error:
        return None
    if "no debug info" in str(v.type):
        raise CoruError("%s is in the program but it has no debug info: rebuild with -g "
                        "(meson's debug and debugoptimized build types have it)" % name)
    return v.dereference()


def _field_offsets(t, prefix=""):
    """{'a.b.c': (byte offset, type)} for every field of struct type t."""
    out = {}
    t = t.strip_typedefs()
    for f in t.fields():
        if f.name is None or not hasattr(f, "bitpos"):
            continue
        ft = f.type.strip_typedefs()
        key = prefix + f.name
        out[key] = (f.bitpos // 8, ft)
        if ft.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            for k, (o, st) in _field_offsets(ft, key + ".").items():
                out[k] = (f.bitpos // 8 + o, st)
    return out


_sym_cache = {}


def _main_file():
    try:
        return gdb.current_progspace().filename
    except (gdb.error, AttributeError):
        return None


def symbolize(pc, line=True):
    """'func+0x1f (file.c:42)' for a code address, from the minimal symbols
    (static functions too) and the line table; '0x...' if unknown."""
    if not pc:
        return "0x0"
    key = (pc, line)
    if key in _sym_cache:
        return _sym_cache[key]
    s = "0x%x" % pc
    try:
        out = gdb.execute("info symbol 0x%x" % pc, to_string=True).strip()
        m = re.match(r"^(\S+)(?: \+ (\d+))? in section \S+(?: of (\S+))?", out)
        if m:
            s = m.group(1)
            if m.group(2) and int(m.group(2)):
                s += "+0x%x" % int(m.group(2))
            if m.group(3) and m.group(3) != _main_file():
                s += " in " + m.group(3).rsplit("/", 1)[-1]
    except gdb.error:
        pass
    if line:
        try:
            # a spawn site is a return address: its call is the byte before
            sal = gdb.find_pc_line(pc - 1)
            if sal.symtab is not None and sal.line:
                s += " (%s:%d)" % (sal.symtab.filename.rsplit("/", 1)[-1], sal.line)
        except gdb.error:
            pass
    _sym_cache[key] = s
    return s


def _fn_name(pc):
    """The name of the function at pc (a coroutine's fn)."""
    return symbolize(pc, line=False).split(" in ", 1)[0]


# ---------------------------------------------------------------- the layout


_FALLBACK_KINDS = ["NONE", "CHAN_SEND", "CHAN_RECV", "SELECT", "SLEEP", "JOIN", "MUTEX", "COND",
                   "SEMA", "WAITGROUP", "IO", "POOL", "EXITED"]
_KIND_TEXT = {"NONE": "nothing", "POOL": "blocking pool"}  # as in src/sched/dump.c


class Layout:
    """Offsets of the fields the commands read, from the program's types."""

    def __init__(self):
        reg = _var("coru__registry")
        if reg is None:
            raise CoruError("no symbol coru__registry: not a coru program, or the library is "
                            "not loaded yet (start the program, or load its core)")
        # its address, not the value: a gdb.Value keeps the contents it
        # first read, and the registry changes whenever the program runs
        self.registry_ptr = reg.address
        try:
            chunk_t = reg["head"].type.strip_typedefs().target().strip_typedefs()
            self.chunk_ptr_t = chunk_t.pointer()
            slots = [f for f in chunk_t.fields() if f.name == "slots"][0]
            self.slots_off = slots.bitpos // 8
            co_t = slots.type.strip_typedefs().target().strip_typedefs()
        except (gdb.error, IndexError, AttributeError, RuntimeError) as e:
            raise CoruError("struct coru__reg_chunk is not as this script expects (%s): is "
                            "tools/coru-gdb.py out of step with src/sched/registry.c?" % e)
        self.co_t = co_t
        self.co_size = co_t.sizeof
        f = _field_offsets(co_t)
        self.fields = f
        need = ["id", "pstate", "stack", "reg.kind", "reg.obj", "reg.arg", "reg.until", "reg.since",
                "reg.name", "reg.parent", "reg.site", "reg.fn"]
        missing = [n for n in need if n not in f]
        if missing:
            raise CoruError("struct coru_co has no field %s: is tools/coru-gdb.py out of step "
                            "with src/sched/sched.h?" % ", ".join(missing))
        self.ctx_kind = "sp" if "ctx.sp" in f else ("ucontext" if "ctx.uc" in f else None)
        self.kinds = {}
        try:
            et = gdb.lookup_type("enum coru__wait_kind")
            for e in et.fields():
                self.kinds[int(e.enumval)] = e.name
        except gdb.error:
            self.kinds = {i: "CORU__W_" + n for i, n in enumerate(_FALLBACK_KINDS)}
        self.kind_val = {n.replace("CORU__W_", ""): v for v, n in self.kinds.items()}
        self.exited = self.kind_val.get("EXITED", 12)
        self.arch = gdb.selected_inferior().architecture().name()

    def kind_text(self, k):
        n = self.kinds.get(k)
        if n is None:
            return "kind %d" % k
        n = n.replace("CORU__W_", "")
        return _KIND_TEXT.get(n, n.lower().replace("_", " "))

    def get(self, buf, base, name, signed=False):
        off, t = self.fields[name]
        size = t.sizeof
        fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
        if not signed:
            fmt = fmt.upper()
        return struct.unpack_from("<" + fmt, buf, base + off)[0]


def layout():
    """The layout, looked up afresh by every command (a rerun of a PIE
    program or another core moves everything), with the symbol cache
    emptied for the same reason."""
    _sym_cache.clear()
    return Layout()


# ---------------------------------------------------------------- reading


class Co:
    """One live coroutine, as read from its registry slot."""

    def __init__(self, lay, addr, buf, base):
        g = lambda n, s=False: lay.get(buf, base, n, s)
        self.addr = addr
        self.id = g("id")
        self.pstate = g("pstate", True)
        self.stack = g("stack")
        self.kind = g("reg.kind", True)
        self.obj = g("reg.obj")
        self.arg = g("reg.arg", True)
        self.until = g("reg.until", True)
        self.since = g("reg.since", True)
        self.parent = g("reg.parent")
        self.site = g("reg.site")
        self.fn = g("reg.fn")
        self.ext = g("reg.ext") if "reg.ext" in lay.fields else 0
        off = lay.fields["reg.name"][0]
        raw = bytes(buf[base + off:base + off + 32])
        self.name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.sp = g("ctx.sp") if lay.ctx_kind == "sp" else 0
        self.worker = -1
        self.thread = None


def _inferior():
    inf = gdb.selected_inferior()
    if inf is None or inf.pid == 0 and not inf.threads():
        raise CoruError("no process and no core file: `run` or `start` the program, attach "
                        "to it, or load a core (gdb PROGRAM CORE)")
    return inf


def read_coroutines(lay):
    inf = _inferior()
    out = []
    seen = set()
    chunk = int(lay.registry_ptr.dereference()["head"])
    while chunk:
        if chunk in seen:
            raise CoruError("the registry's chunk list loops at 0x%x (corrupt memory?)" % chunk)
        seen.add(chunk)
        try:
            c = gdb.Value(chunk).cast(lay.chunk_ptr_t).dereference()
            carved, cap, nxt = int(c["carved"]), int(c["cap"]), int(c["next"])
            if carved > cap or cap > (1 << 24):
                raise CoruError("registry chunk 0x%x: carved %d of %d slots (corrupt memory?)"
                                % (chunk, carved, cap))
            base = chunk + lay.slots_off
            buf = inf.read_memory(base, carved * lay.co_size).tobytes() if carved else b""
        except gdb.MemoryError as e:
            gdb.write("coru: cannot read registry chunk 0x%x: %s\n" % (chunk, e))
            break
        for i in range(carved):
            o = i * lay.co_size
            if lay.get(buf, o, "id") == 0 or lay.get(buf, o, "reg.kind", True) == lay.exited:
                continue
            out.append(Co(lay, base + o, buf, o))
        chunk = nxt
    out.sort(key=lambda co: co.id)
    return out


class Workers:
    """The run's workers: which coroutine each runs, its thread."""

    def __init__(self):
        self.cur = {}       # coroutine address -> worker index
        self.threads = {}   # worker index -> gdb thread number
        self.n = 0
        self.clock = 0      # latest coarse clock of any worker (ns)
        rt = _var("coru__rt")
        if rt is None:
            rt = _var("rt", files=("sched.c", "run.c"))
        if rt is None:
            self.note = "no coru__rt (or rt) symbol: running coroutines are shown as runnable"
            return
        self.note = None
        fields = [f.name for f in rt.type.strip_typedefs().fields()]
        if "state" in fields and int(rt["state"]) != 1:
            return  # no run in progress: rt.w is stale or NULL
        w = rt["w"]
        if int(w) == 0:
            return
        self.n = int(rt["n"])
        if self.n > 4096:
            self.note = "coru__rt.n is %d (corrupt memory?): workers ignored" % self.n
            self.n = 0
            return
        handles = {}
        try:
            for t in _inferior().threads():
                try:
                    h = t.handle()
                    if h:
                        handles[int.from_bytes(h, "little")] = t.num
                except (gdb.error, RuntimeError, AttributeError):
                    pass
        except gdb.error:
            pass
        wf = [f.name for f in w.type.strip_typedefs().target().strip_typedefs().fields()]
        for i in range(self.n):
            try:
                wi = w[i]
                cur = int(wi["cur_pub"])
                if cur:
                    self.cur[cur] = i
                if "thread" in wf and int(wi["thread"]) in handles:
                    self.threads[i] = handles[int(wi["thread"])]
                if "coarse_now" in wf:
                    self.clock = max(self.clock, int(wi["coarse_now"]))
            except gdb.MemoryError:
                pass


def _is_live():
    inf = gdb.selected_inferior()
    try:
        return inf.connection is not None and inf.connection.type == "native" and inf.pid != 0
    except AttributeError:
        return "core dump" not in gdb.execute("info target", to_string=True).lower()


def snapshot():
    """(layout, coroutines, workers, now in ns, a note about the clock)."""
    lay = layout()
    cos = read_coroutines(lay)
    ws = Workers()
    for co in cos:
        if co.addr in ws.cur:
            co.worker = ws.cur[co.addr]
            co.thread = ws.threads.get(co.worker)
    if _is_live():
        now, note = time.clock_gettime_ns(time.CLOCK_MONOTONIC), None
    else:
        # a core: "now" is the latest clock reading the process made
        now = max([ws.clock] + [co.since for co in cos]) or None
        note = ("not a live process: times are relative to the workers' last clock reading"
                if now else "not a live process: no clock reading, times not shown")
    return lay, cos, ws, now, note


# ---------------------------------------------------------------- text


def _cstring(addr, n=64):
    try:
        raw = _inferior().read_memory(addr, n).tobytes()
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    except gdb.MemoryError:
        return "0x%x" % addr


def wait_text(lay, co, now):
    k = lay.kinds.get(co.kind, "").replace("CORU__W_", "")
    kt = lay.kind_text(co.kind)
    if k == "SLEEP":
        if co.until < 0:
            return "sleep forever"
        if now is None:
            return "sleep until %.3f s (monotonic clock)" % (co.until / 1e9)
        return "sleep, %.3f s left" % ((co.until - now) / 1e9)
    if k == "JOIN":
        s = "join coroutine %d" % co.arg
    elif k == "IO":
        s = "io %s fd %d" % (_cstring(co.obj) if co.obj else "?", co.arg)
    elif k == "POOL":
        s = "blocking pool running %s" % symbolize(co.obj, line=False)
    elif k == "SELECT":
        s = "select of %d cases, first 0x%x" % (co.arg, co.obj)
    elif k in lay.kind_val:
        s = kt + (" 0x%x" % co.obj if co.obj else "")
    else:
        s = "%s obj 0x%x arg %d" % (kt, co.obj, co.arg)
    if co.until >= 0 and now is None:
        s += ", deadline at %.3f s (monotonic clock)" % (co.until / 1e9)
    elif co.until >= 0:
        s += ", deadline in %.3f s" % ((co.until - now) / 1e9)
    if co.ext:
        s += " (used by a plain thread)"
    return s


def state_text(lay, co, now):
    if co.worker >= 0:
        t = " (thread %d)" % co.thread if co.thread is not None else ""
        return "running on worker %d%s" % (co.worker, t)
    if co.pstate in (1, 2):
        # since is 0 when the worker had not read its coarse clock yet
        if now is None or co.since <= 0:
            return "parked: %s" % wait_text(lay, co, now)
        return "parked %.2f s: %s" % (max(now - co.since, 0) / 1e9, wait_text(lay, co, now))
    if not co.stack:
        return "runnable (not started)"
    return "runnable"


def co_line(lay, co, now):
    nm = ' "%s"' % co.name if co.name else ""
    return "coroutine %d%s [%s] %s; parent %d; spawned at %s" % (
        co.id, nm, _fn_name(co.fn), state_text(lay, co, now), co.parent, symbolize(co.site))


# ---------------------------------------------------------------- the unwinder


class _Selected:
    """The coroutine whose saved frame the unwinder shows: regs are the
    caller registers of the selected thread's frame 0, sp the coroutine's
    saved stack pointer (frame 0's id)."""

    def __init__(self, co, saved, ptid):
        self.co = co
        self.regs, self.sp = saved
        self.ptid = ptid


_selected = None


def saved_registers(lay, co):
    """The registers coru__ctx_swap restores when co is resumed, as they
    are right after its `ret` ({gdb register name: value}), and the saved
    stack pointer."""
    inf = _inferior()
    arch = lay.arch
    x86 = "x86-64" in arch or "x86_64" in arch
    if lay.ctx_kind == "sp":
        sp = co.sp
        if not sp:
            raise CoruError("no saved stack pointer")
        if x86:
            # [0] fpctl [8] r15 [16] r14 [24] r13 [32] r12 [40] rbx [48] rbp [56] ret
            f = struct.unpack("<8Q", inf.read_memory(sp, 64).tobytes())
            return {"rip": f[7], "rsp": sp + 64, "rbp": f[6], "rbx": f[5], "r12": f[4],
                    "r13": f[3], "r14": f[2], "r15": f[1]}, sp
        if "aarch64" in arch:
            # [0] x19 x20 ... [64] x27 x28 [80] x29 x30 [96] d8-d15 [160] fpcr;
            # the swap's ret goes to the restored x30 with sp = saved + 176
            f = struct.unpack("<12Q", inf.read_memory(sp, 96).tobytes())
            regs = {"x%d" % (19 + i): f[i] for i in range(12)}
            regs.update({"pc": f[11], "sp": sp + 176})
            return regs, sp
        raise CoruError("no saved-frame layout for architecture %s" % arch)
    if lay.ctx_kind == "ucontext" and x86:
        # glibc's swapcontext: gregs[] hold the caller's registers, RSP as
        # after the return, RIP the return address (sys/ucontext.h indices)
        off = lay.fields.get("ctx.uc.uc_mcontext.gregs")
        if off is None:
            raise CoruError("struct coru__ctx has no uc.uc_mcontext.gregs")
        g = struct.unpack("<23Q", inf.read_memory(co.addr + off[0], 23 * 8).tobytes())
        return {"rip": g[16], "rsp": g[15], "rbp": g[10], "rbx": g[11], "r12": g[4],
                "r13": g[5], "r14": g[6], "r15": g[7]}, g[15]
    raise CoruError("saved contexts of this build (ctx %s on %s) are not supported"
                    % (lay.ctx_kind, arch))


def saved_context(lay, co):
    """saved_registers, checked: a return address of 0 means the stack's
    memory is not there (a core without it)."""
    regs, sp = saved_registers(lay, co)
    if not regs.get("rip", regs.get("pc")):
        raise CoruError("its saved frame at 0x%x reads as zeros: its stack is not in this core "
                        "(gdb's generate-core-file leaves out stacks with guard markers; see "
                        "README, Debugging with gdb)" % sp)
    return regs, sp


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class CoruUnwinder(gdb.unwinder.Unwinder):
    """While a coroutine is selected (coru bt, coru select), frame 0 of the
    selected thread returns into the coroutine's saved frame: its caller's
    registers are those coru__ctx_swap would restore. Every older frame is
    then unwound by gdb's own unwinders (DWARF CFI) on the coroutine's
    stack. Frame 0 itself stays the thread's own (its pc cannot be
    changed); the commands leave it out. Its frame id takes the
    coroutine's stack pointer so that the next frame, on the coroutine's
    stack, is never "inner" to it (gdb would stop with "previous frame
    inner to this frame")."""

    def __init__(self):
        super().__init__("coru")

    def __call__(self, pf):
        sel = _selected
        if sel is None:
            return None
        try:
            if pf.level() != 0:
                return None
            th = gdb.selected_thread()
            if th is None or th.ptid != sel.ptid:
                return None
            u64 = gdb.lookup_type("unsigned long long")
            fid = _FrameId(gdb.Value(sel.sp).cast(u64), pf.read_register("pc"))
            ui = pf.create_unwind_info(fid)
            for name, val in sel.regs.items():
                t = pf.read_register(name).type
                ui.add_saved_register(name, gdb.Value(val).cast(u64).cast(t))
            return ui
        except Exception as e:  # never break gdb's own unwinding
            gdb.write("coru: unwinder: %s\n" % e, gdb.STDERR)
            return None


_unwinder = CoruUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)


def _select(sel):
    global _selected
    _selected = sel
    gdb.invalidate_cached_frames()


def _unselect(_ev=None):
    if _selected is not None:
        _select(None)


def coroutine_bt(lay, co, full=False):
    """The backtrace text of a coroutine that is not running, from its
    saved context: gdb's bt with frame 0 (the thread's own) left out."""
    th = gdb.selected_thread()
    if th is None:
        raise CoruError("no thread selected")
    _select(_Selected(co, saved_context(lay, co), th.ptid))
    try:
        text = gdb.execute("bt full" if full else "bt", to_string=True)
    finally:
        _select(None)
    out = []
    skipping = False
    for ln in text.splitlines():
        m = re.match(r"^#(\d+)(\s+)(.*)$", ln)
        if m:
            n = int(m.group(1))
            skipping = n == 0
            if skipping:
                continue
            num = "#%d" % (n - 1)
            out.append(num + " " * max(1, len(m.group(1)) + len(m.group(2)) + 1 - len(num)) + m.group(3))
        elif not skipping:
            out.append(ln)
    return "\n".join(out)


# ---------------------------------------------------------------- commands


def _parse_ids(args, cos):
    by_id = {co.id: co for co in cos}
    want = []
    for a in args:
        if a == "all":
            want.extend(cos)
            continue
        try:
            i = int(a, 0)
        except ValueError:
            raise CoruError("not a coroutine id: %s (coru bt ID... | all)" % a)
        if i not in by_id:
            raise CoruError("no live coroutine %d (see coru list)" % i)
        want.append(by_id[i])
    return want


class CoruPrefix(gdb.Command):
    """Commands for coru programs: coru list, coru bt ID...|all, coru select ID|none."""

    def __init__(self):
        super().__init__("coru", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class CoruList(gdb.Command):
    """List coru's live coroutines: id, name, function, state (running on
worker N, runnable, parked on what and for how long), parent, spawn site.
Reads memory only (live process or core file)."""

    def __init__(self):
        super().__init__("coru list", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        try:
            lay, cos, ws, now, note = snapshot()
        except CoruError as e:
            raise gdb.GdbError("coru: %s" % e)
        np = sum(1 for co in cos if co.worker < 0 and co.pstate in (1, 2))
        nr = sum(1 for co in cos if co.worker >= 0)
        gdb.write("%d coroutines: %d running, %d runnable, %d parked; %d workers\n"
                  % (len(cos), nr, len(cos) - nr - np, np, ws.n))
        for n in (ws.note, note):
            if n:
                gdb.write("(%s)\n" % n)
        for co in cos:
            gdb.write(co_line(lay, co, now) + "\n")


class CoruBt(gdb.Command):
    """Backtraces of coroutines: coru bt [full] ID... | all
A parked or runnable coroutine's backtrace comes from its saved context;
a running one's stack is its worker thread's (thread apply all bt)."""

    def __init__(self):
        super().__init__("coru bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        full = "full" in args
        args = [a for a in args if a != "full"]
        if not args:
            raise gdb.GdbError("usage: coru bt [full] ID... | all")
        try:
            lay, cos, ws, now, note = snapshot()
            want = _parse_ids(args, cos)
        except CoruError as e:
            raise gdb.GdbError("coru: %s" % e)
        try:
            level = gdb.selected_frame().level()
        except gdb.error:
            level = None
        for co in want:
            gdb.write(co_line(lay, co, now) + "\n")
            if co.worker >= 0:
                if co.thread is not None:
                    gdb.write("  running: its stack is worker %d's, thread %d:\n" % (co.worker, co.thread))
                    try:
                        text = gdb.execute("thread apply %d bt%s" % (co.thread, " full" if full else ""),
                                           to_string=True)
                        gdb.write("\n".join(ln for ln in text.splitlines()
                                            if ln.strip() and not ln.startswith("Thread ")) + "\n")
                    except gdb.error as e:
                        gdb.write("  no backtrace: %s\n" % e)
                else:
                    gdb.write("  running: its stack is worker %d's (thread apply all bt)\n"
                              % co.worker)
            elif not co.stack:
                gdb.write("  not started yet: no stack\n")
            else:
                try:
                    gdb.write(coroutine_bt(lay, co, full) + "\n")
                except (CoruError, gdb.error) as e:
                    gdb.write("  no backtrace: %s\n" % e)
            gdb.write("\n")
        if level is not None:
            try:
                gdb.execute("select-frame %d" % level, to_string=True)
            except gdb.error:
                pass


class CoruSelect(gdb.Command):
    """Show a coroutine's stack in gdb's own commands: coru select ID | none
After `coru select ID`, bt, frame N, up, info locals and print work on
coroutine ID's saved stack (frame #0 stays the thread's own: the
coroutine's innermost frame is #1). `coru select none`, or resuming the
program, goes back to the threads' own stacks."""

    def __init__(self):
        super().__init__("coru select", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if args in ([], ["none"]):
            _unselect()
            return
        try:
            lay, cos, ws, now, note = snapshot()
            (co,) = _parse_ids(args[:1], cos)
            if co.worker >= 0:
                raise CoruError("coroutine %d is running on worker %d: its stack is that "
                                "thread's" % (co.id, co.worker))
            if not co.stack:
                raise CoruError("coroutine %d has not started yet" % co.id)
            th = gdb.selected_thread()
            _select(_Selected(co, saved_context(lay, co), th.ptid))
        except CoruError as e:
            raise gdb.GdbError("coru: %s" % e)
        gdb.write(co_line(lay, co, now) + "\n")
        gdb.write("(its innermost frame is #1; `coru select none` to go back)\n")


CoruPrefix()
CoruList()
CoruBt()
CoruSelect()

# The program running again: a selection would confuse its stepping.
for _ev in ("cont", "exited"):
    try:
        getattr(gdb.events, _ev).connect(_unselect)
    except AttributeError:
        pass

#!/usr/bin/python3
"""tools/bench_table.py - tables from RESULT lines (see ../shared/peers/README.md).

Usage: bench_table.py coru  [file...]   coru's rows: bench, workers, runs, median ns/op, extras
       bench_table.py ratio [file...]   coru's median ns/op and coru/peer ratios per bench row

Lines that do not start with "RESULT " are ignored; reads stdin when no file is given.
A row is one (bench, workers, conns); with several runs (REPEAT) the median ns_per_op is used,
and the extras shown are those of the run with that median (the lower middle one).
"""
import statistics
import sys

BENCH_ORDER = ["switch", "spawn", "skynet", "pingpong", "mpmc", "timers", "parked", "echo", "http", "httppipe", "hellopath"]
# Ratio columns: header -> impl names that count as that peer (Tokio's HTTP server is "tokio-hyper").
PEERS = [
    ("go", ("go",)),
    ("boost", ("boost",)),
    ("boost-suspend", ("boost-suspend",)),
    ("tokio", ("tokio", "tokio-hyper")),
    ("nginx", ("nginx",)),
]


def read_results(paths):
    """Returns {(bench, impl, workers, conns): [fields, ...]} from the RESULT lines."""
    rows = {}
    streams = [open(p, encoding="utf-8") for p in paths] if paths else [sys.stdin]
    for stream in streams:
        for line in stream:
            if not line.startswith("RESULT "):
                continue
            fields = {}
            for token in line.split()[1:]:
                key, sep, value = token.partition("=")
                if sep:
                    fields[key] = value
            try:
                float(fields["ns_per_op"])
                key = (fields["bench"], fields["impl"], fields.get("workers", "-"), fields.get("conns", "-"))
            except (KeyError, ValueError):
                print(f"bench_table: ignoring malformed line: {line.strip()}", file=sys.stderr)
                continue
            rows.setdefault(key, []).append(fields)
        if stream is not sys.stdin:
            stream.close()
    return rows


def median_run(runs):
    """(median ns_per_op, the run whose value is the lower middle one)."""
    ordered = sorted(runs, key=lambda f: float(f["ns_per_op"]))
    return statistics.median(float(f["ns_per_op"]) for f in ordered), ordered[(len(ordered) - 1) // 2]


def row_order(key):
    bench, _impl, workers, conns = key
    rank = BENCH_ORDER.index(bench) if bench in BENCH_ORDER else len(BENCH_ORDER)
    num = lambda s: int(s) if s.isdigit() else 0
    return (rank, bench, num(conns), num(workers))


def print_aligned(header, body, left=1):
    """Prints columns padded to their widest cell: the first `left` columns and the last one
    left-aligned, the (numeric) ones between right-aligned."""
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    last = len(header) - 1
    for r in [header] + body:
        cells = [c.ljust(w) if i < left or i == last else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())


def show_coru(rows):
    keys = sorted((k for k in rows if k[1] == "coru"), key=row_order)
    if not keys:
        print("(no coru results)")
        return
    with_conns = any(k[3] != "-" for k in keys)
    header = ["bench", "workers"] + (["conns"] if with_conns else []) + ["runs", "ns_per_op", "extras"]
    body = []
    for key in keys:
        med, mid = median_run(rows[key])
        extras = mid.get("extra", "").replace(",", " ")
        body.append([key[0], key[2]] + ([key[3]] if with_conns else []) +
                    [str(len(rows[key])), f"{med:.1f}", extras])
    print_aligned(header, body)


def show_ratio(rows):
    coru = sorted({(k[0], k[2], k[3]) for k in rows if k[1] == "coru"},
                  key=lambda r: row_order((r[0], "", r[1], r[2])))
    if not coru:
        print("(no coru results: nothing to compare)")
        return
    medians = {k: median_run(v)[0] for k, v in rows.items()}
    with_conns = any(r[2] != "-" for r in coru)
    header = ["bench", "workers"] + (["conns"] if with_conns else []) + ["coru ns/op"] + \
             [f"coru/{name}" for name, _ in PEERS]
    body = []
    for bench, workers, conns in coru:
        mine = medians[(bench, "coru", workers, conns)]
        cells = [bench, workers] + ([conns] if with_conns else []) + [f"{mine:.1f}"]
        for _name, impls in PEERS:
            theirs = next((medians[(bench, i, workers, conns)] for i in impls
                           if (bench, i, workers, conns) in medians), None)
            cells.append(f"{mine / theirs:.2f}" if theirs else "-")
        body.append(cells)
    print_aligned(header + [""], [r + [""] for r in body])
    print("ratio = coru ns_per_op / peer ns_per_op (medians); below 1 means coru is faster; - = no peer result")


def main(argv):
    if len(argv) < 2 or argv[1] not in ("coru", "ratio"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rows = read_results(argv[2:])
    (show_coru if argv[1] == "coru" else show_ratio)(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

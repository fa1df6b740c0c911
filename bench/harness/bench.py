"""Weir against Flink and DuckDB on the same data, in one run.

Run it through `bash bench/run.sh` (which builds the release binaries and the
venv first); `--help` lists the options. For each query in queries.py and
each engine it measures the query's wall and CPU seconds and the engine's
peak RSS, writes each engine's result rows to a file and checks that every
engine returned the same multiset as the reference (DuckDB, or the first
engine that ran). A mismatch fails the run, after the table is written.

Queries: tumble, hop, session and join over the bids of `weir-bench
gen-bids`; Nexmark q0 .. q8 over person, auction and bid files written once
by Weir's `nexmark` generator (queries.py says how each dialect writes them).

Engines (rows of the table):
  weir          streaming: CREATE MATERIALIZED VIEW ... (EMIT ON WINDOW CLOSE
                where the query has windows to close) over bounded file
                streams, FLUSH; checkpoints off
  weir-ckpt     the same with --checkpoint-interval (when the build has it)
  weir-batch    the same query as a SELECT over a file table
  flink         PyFlink streaming, local MiniCluster, blackhole sink
  flink-batch   PyFlink batch, same
  duckdb        DuckDB over the same file

Also measured: `weir serve` spawn to the first answered query, and a
100K-row streaming job end to end.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(HERE))
import queries  # noqa: E402

ENGINES = ["weir", "weir-ckpt", "weir-batch", "flink", "flink-batch", "duckdb"]
TICKS = os.sysconf("SC_CLK_TCK")


class Unsupported(Exception):
    """The engine does not run this query (recorded, not a failure)."""


class Skipped(Exception):
    """The engine could not run here at all (recorded, not a failure)."""


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data ----
def ensure_data(rows, bench_bin):
    """bench/data/bids-N.csv (the generator's file) and its body without the
    header line, which every engine reads: Flink's CSV format has no option
    to skip a header, so all engines read the same headerless bytes."""
    data = BENCH / "data"
    data.mkdir(exist_ok=True)
    csv = data / f"bids-{rows}.csv"
    body = data / f"bids-{rows}.body.csv"
    if not csv.exists():
        log(f"generating {csv}")
        subprocess.run([str(bench_bin), "gen-bids", "--rows", str(rows), "--out", str(csv)],
                       check=True)
    if not body.exists() or body.stat().st_mtime < csv.stat().st_mtime:
        with open(csv, "rb") as src, open(str(body) + ".tmp", "wb") as dst:
            src.readline()
            shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(str(body) + ".tmp", body)
    return body


NEXMARK_SEED = 42


def ensure_nexmark(rows, weir_bin):
    """bench/data/nexmark-N/{bid,auction,person}.csv: Weir's built-in
    `nexmark` generator's rows (queries.nexmark_shape), written once per row
    count through `COPY (SELECT ..) TO STDOUT` and read by every engine.
    `shape.json` says what made them; a different shape makes them again."""
    folder = BENCH / "data" / f"nexmark-{rows}"
    shape = {t: list(v) for t, v in queries.nexmark_shape(rows).items()}
    shape["seed"] = NEXMARK_SEED
    stamp = folder / "shape.json"
    paths = {t: folder / f"{t}.csv" for t in queries.NEXMARK_TABLES}
    if stamp.exists() and json.loads(stamp.read_text()) == shape and \
            all(p.exists() for p in paths.values()):
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {folder} with {weir_bin}")
    with WeirServer(weir_bin) as server:
        conn = server.connect()
        for table, path in paths.items():
            table_rows, rate = shape[table]
            conn.execute(queries.weir_nexmark_generator(table, table_rows, rate, NEXMARK_SEED))
            written = 0
            with conn.cursor().copy(queries.weir_nexmark_export(table)) as copy, \
                    open(str(path) + ".tmp", "wb") as f:
                for chunk in copy:
                    f.write(chunk)
                    written += bytes(chunk).count(b"\n")
            if written != table_rows:
                raise RuntimeError(f"the nexmark generator wrote {written} {table} rows, "
                                   f"expected {table_rows}")
            os.replace(str(path) + ".tmp", path)
        conn.close()
    stamp.write_text(json.dumps(shape) + "\n")
    return paths


class Data:
    """Every input table's file and row count, for one --rows."""

    def __init__(self, args, qs):
        self.paths, self.rows = {}, {}
        if any("bids" in queries.SOURCES[q] for q in qs):
            self.paths["bids"] = ensure_data(args.rows, args.bench_bin)
            self.rows["bids"] = args.rows
        if any(set(queries.SOURCES[q]) & set(queries.NEXMARK_TABLES) for q in qs):
            self.paths.update(ensure_nexmark(args.rows, args.weir_bin))
            self.rows.update({t: r for t, (r, _) in queries.nexmark_shape(args.rows).items()})

    def of(self, query):
        """{table: path} of the tables `query` reads."""
        return {t: str(self.paths[t]) for t in queries.SOURCES[query]}

    def events(self, query):
        """The query's events: the rows of the tables it reads."""
        return sum(self.rows[t] for t in queries.SOURCES[query])


# ---------------------------------------------------------------- weir ----
class WeirServer:
    """A `weir serve` on a fresh data directory and free ports."""

    def __init__(self, binary, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="weir-bench-")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", f"{self.dir}/data", "--pg-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--log", "warn", "--print-addrs", *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            self.proc.wait()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(err.strip() or "weir exited before listening")
        host, port = json.loads(line)["pg_addr"].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.pid = self.proc.pid

    def connect(self):
        return psycopg.connect(host=self.host, port=self.port, user="weir", dbname="weir",
                               autocommit=True)

    def cpu(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def peak_rss(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def dump(conn, sql, out):
    """Write a query's rows to `out` as headerless CSV (untimed)."""
    n = 0
    with conn.cursor() as cur, open(out, "w") as f:
        cur.execute(sql)
        while True:
            batch = cur.fetchmany(200_000)
            if not batch:
                break
            f.writelines(",".join("" if v is None else str(v) for v in row) + "\n"
                         for row in batch)
            n += len(batch)
    return n


def run_weir_stream(args, query, data, out, checkpoint):
    if query in queries.WEIR_STREAM_UNSUPPORTED:
        raise Unsupported(queries.WEIR_STREAM_UNSUPPORTED[query])
    extra = ["--checkpoint-interval", args.checkpoint_interval if checkpoint else "0s"]
    try:
        server = WeirServer(args.weir_bin, extra)
    except RuntimeError as e:
        if "checkpoint" in str(e):
            if checkpoint:
                raise Skipped("checkpoints: not available in this build")
            server = WeirServer(args.weir_bin)  # no flag at all: checkpoints are off
            args.no_checkpoint_flag = True
        else:
            raise
    with server:
        conn = server.connect()
        for table, path in data.items():
            conn.execute(queries.weir_stream_ddl(table, path))
        view = queries.weir_view(query)
        c0, t0 = server.cpu(), time.perf_counter()
        try:
            conn.execute(f"CREATE MATERIALIZED VIEW r AS {view}")
        except psycopg.errors.FeatureNotSupported as e:
            raise Unsupported(f"unsupported: {e.sqlstate} {str(e).splitlines()[0]}")
        conn.execute("FLUSH")
        wall, cpu = time.perf_counter() - t0, server.cpu() - c0
        rss = server.peak_rss()
        cols = ", ".join(n for n, _ in queries.COLUMNS[query])
        rows = dump(conn, f"SELECT {cols} FROM r", out)
        conn.close()
    return {"wall": wall, "cpu": cpu, "rss": rss, "rows": rows}


def run_weir_batch(args, query, data, out):
    with WeirServer(args.weir_bin) as server:
        conn = server.connect()
        for table, path in data.items():
            conn.execute(queries.weir_table_ddl(table, path))
        c0, t0 = server.cpu(), time.perf_counter()
        conn.execute(queries.weir_digest(query)).fetchall()
        wall, cpu = time.perf_counter() - t0, server.cpu() - c0
        rss = server.peak_rss()
        rows = dump(conn, queries.WEIR[query], out)
        conn.close()
    return {"wall": wall, "cpu": cpu, "rss": rss, "rows": rows}


def weir_startup(args, runs=5):
    """Milliseconds from spawning `weir serve` to the first answered query."""
    times = []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="weir-start-")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(args.weir_bin), "serve", "--data-dir", f"{d}/data", "--pg-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--log", "warn", "--print-addrs"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, text=True)
        # The port is known once it is bound; the first connection then
        # proves it accepts and answers.
        port = int(json.loads(proc.stdout.readline())["pg_addr"].rsplit(":", 1)[1])
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="weir", dbname="weir",
                                     connect_timeout=1) as conn:
                    conn.execute("SELECT 1").fetchall()
                break
            except psycopg.OperationalError:
                time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return times


def weir_small_job(args, bench_bin, runs=5):
    """A 100K-row streaming job end to end: CREATE STREAM, CREATE
    MATERIALIZED VIEW, FLUSH and reading the view, on a running server."""
    data = ensure_data(100_000, bench_bin)
    times = []
    with WeirServer(args.weir_bin) as server:
        conn = server.connect()
        for i in range(runs):
            t0 = time.perf_counter()
            conn.execute(queries.weir_stream_ddl("bids", data, name=f"bids{i}"))
            conn.execute(f"CREATE MATERIALIZED VIEW v{i} AS "
                         + queries.WEIR["tumble"].replace("TUMBLE(bids", f"TUMBLE(bids{i}")
                         + " EMIT ON WINDOW CLOSE")
            conn.execute("FLUSH")
            rows = conn.execute(f"SELECT * FROM v{i}").fetchall()
            times.append((time.perf_counter() - t0) * 1000)
            assert rows, "the 100K-row view is empty"
        conn.close()
    return times


# --------------------------------------------------------- subprocesses ----
def run_json(cmd, prefix=""):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith(prefix) and line[len(prefix):].lstrip().startswith("{"):
            return json.loads(line[len(prefix):])
    causes = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("Caused by")]
    detail = causes[-1] if causes else "\n".join(proc.stderr.strip().splitlines()[-5:])
    raise RuntimeError(f"{cmd[1]} exited {proc.returncode}: {detail}")


def run_duckdb(args, query, data, out):
    return run_json([sys.executable, str(HERE / "duckdb_job.py"), query, json.dumps(data),
                     str(out), str(args.parallelism)])


def flink_python(args):
    """The venv that has PyFlink, made on first use (it is ~600 MB)."""
    venv = BENCH / ".venv-flink"
    py = venv / "bin" / "python"
    if shutil.which("java") is None:
        raise Skipped("no java on PATH (PyFlink needs Java 11 or 17)")
    probe = [str(py), "-c", "import pyflink, psutil"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    log("installing PyFlink into bench/.venv-flink (once; a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "-r",
                          str(BENCH / "requirements-flink.txt")])
    if pip.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        raise Skipped("could not install apache-flink from PyPI (see the pip output above)")
    return py


def run_flink(args, query, data, out, mode):
    if (query, mode) in queries.FLINK_UNSUPPORTED:
        raise Unsupported(queries.FLINK_UNSUPPORTED[(query, mode)])
    py = flink_python(args)
    if out.exists():
        shutil.rmtree(out)
    target = str(out) if args.check else "-"
    return run_json([str(py), str(HERE / "flink_job.py"), query, mode, json.dumps(data), target,
                     str(args.parallelism)], prefix="RESULT ")


# --------------------------------------------------------------- check ----
# How the check reads a result column: DECIMAL is a DOUBLE in Weir, so
# every engine's value is read as a DOUBLE and rounded to the decimal's 3
# places (exact for 0.908 * price); a DOUBLE aggregate is compared to 9
# decimal places, so that a last-bit difference in summation order does not
# count as a different row.
_CHECK_TYPES = {queries.DECIMAL: "DOUBLE"}
_CHECK_AS = {queries.DECIMAL: "CAST({} AS DECIMAL(38, 3))", queries.DOUBLE: "round({}, 9)"}


def read_result(path, query):
    spec = queries.COLUMNS[query]
    cols = ", ".join(f"'{n}': '{_CHECK_TYPES.get(t, t)}'" for n, t in spec)
    exprs = ", ".join(_CHECK_AS.get(t, "{}").format(n) + f" AS {n}" for n, t in spec)
    files = f"{path}/**" if Path(path).is_dir() else str(path)
    return (f"(SELECT {exprs} FROM read_csv('{files}', header = false, columns = {{{cols}}}, "
            "quote = '\"', auto_detect = false))")


def compare(query, ref_path, path):
    """(rows only in the reference, rows only in `path`, rows in `path`)."""
    import duckdb
    con = duckdb.connect()
    a, b = read_result(ref_path, query), read_result(path, query)
    missing = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
    extra = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM {b}").fetchone()[0]
    return missing, extra, rows


# --------------------------------------------------------------- report ----
def fmt(v, spec):
    return "" if v is None else format(v, spec)


def report(results, meta, out_dir):
    lines = [
        f"# Weir vs. Flink vs. DuckDB, {meta['rows']:,} bids",
        "",
        f"{meta['when']}; {meta['machine']}. Data, CSV read by every engine: "
        + ", ".join(f"`{d['path']}` ({d['rows']:,} rows, {d['mb']:.0f} MB)"
                    for d in meta["data"].values())
        + f". Parallelism {meta['parallelism']} everywhere. "
        "CPU is the engine's process(es), user + system, during the query only "
        "(server or JVM start excluded); events/CPU-s = rows of the tables the query reads / "
        "CPU seconds. "
        "Ratios are engine / Weir streaming (Weir batch where streaming does not run the query), "
        "measured in the same run: CPU ratio > 1 means the engine spends more CPU than Weir.",
        "",
    ]
    if "startup_ms" in meta:
        lines += [
            f"- `weir serve` to first answered query: median {meta['startup_ms']:.0f} ms "
            f"(runs: {', '.join(f'{t:.0f}' for t in meta['startup_runs'])})",
            f"- 100K-row streaming job end to end (CREATE STREAM + CREATE MATERIALIZED VIEW + "
            f"FLUSH + read): median {meta['small_job_ms']:.0f} ms "
            f"(runs: {', '.join(f'{t:.0f}' for t in meta['small_job_runs'])})",
        ]
    lines += [
        "",
        "| query | engine | status | wall s | CPU s | M events/CPU-s | peak RSS MiB | "
        "CPU ratio | wall ratio | result rows | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['query']} | {r['engine']} | {r['status']} | {fmt(r.get('wall'), '.2f')} | "
            f"{fmt(r.get('cpu'), '.2f')} | {fmt(r.get('eps') and r['eps'] / 1e6, '.2f')} | "
            f"{fmt(r.get('rss') and r['rss'] / 2**20, '.0f')} | {fmt(r.get('cpu_ratio'), '.2f')} | "
            f"{fmt(r.get('wall_ratio'), '.2f')} | {fmt(r.get('rows'), ',')} | {r.get('check', '')} |")
    lines += ["", "Per query, Weir streaming against the peers (CPU of the peer / CPU of Weir "
              "streaming: above 1, Weir spends less; Weir batch where streaming did not run):",
              ""] + summary_lines(results, meta)
    targets = target_lines(results, meta)
    if targets:
        lines += ["", "Against the targets of issue 10:", ""] + targets
    lines += ["", "Queries:", ""]
    for q in meta["queries"]:
        reads = " + ".join(queries.SOURCES[q])
        events = sum(meta["data"][t]["rows"] for t in queries.SOURCES[q])
        lines.append(f"- `{q}`: {queries.DESCRIBE[q]} (reads {reads}: {events:,} events)")
    notes = meta.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    md = out_dir / f"bench-{meta['rows']}.md"
    md.write_text("\n".join(lines) + "\n")
    (out_dir / f"bench-{meta['rows']}.json").write_text(json.dumps(
        {"meta": meta, "results": results}, indent=1, default=str) + "\n")
    chart(results, meta, out_dir / f"bench-{meta['rows']}.png")
    return md


def summary_lines(results, meta):
    peers = ["flink", "flink-batch", "duckdb"]
    out = ["| query | Weir M events/CPU-s | " + " | ".join(f"{p} / Weir" for p in peers) + " |",
           "|---|---:|" + "---:|" * len(peers)]
    for q in meta["queries"]:
        def row(e):
            return next((r for r in results if r["query"] == q and r["engine"] == e
                         and r["status"] == "ok"), None)
        base = row("weir") or row("weir-batch")
        if not base:
            continue
        eps = f"{base['eps'] / 1e6:.2f}" + ("" if base["engine"] == "weir" else " (batch)")
        ratios = [fmt(row(p) and row(p).get("cpu_ratio"), ".2f") or "-" for p in peers]
        out.append(f"| {q} | {eps} | " + " | ".join(ratios) + " |")
    return out


def target_lines(results, meta):
    def row(q, e):
        return next((r for r in results if r["query"] == q and r["engine"] == e
                     and r["status"] == "ok"), None)
    out = []
    weir, flink, duck = row("tumble", "weir"), row("tumble", "flink"), row("tumble", "duckdb")
    if weir:
        out.append(f"- Weir streaming, tumble: {weir['eps'] / 1e6:.2f} M events/CPU-s "
                   "(target >= 5)")
        if flink:
            out.append(f"- Flink streaming / Weir streaming CPU, tumble: {flink['cpu_ratio']:.1f}x "
                       "(target >= 10x)")
        if duck:
            out.append(f"- DuckDB / Weir streaming CPU, tumble: {duck['cpu_ratio']:.2f}x "
                       "(target: DuckDB's batch speed, i.e. >= 1)")
        ckpt = row("tumble", "weir-ckpt")
        if ckpt:
            out.append(f"- checkpoints every {meta.get('checkpoint_interval')}: "
                       f"{(ckpt['cpu'] / weir['cpu'] - 1) * 100:+.1f} % CPU (target <= 3 %)")
    if "startup_ms" in meta:
        out.append(f"- start to first query: {meta['startup_ms']:.0f} ms (target < 100 ms)")
        out.append(f"- 100K-row job: {meta['small_job_ms']:.0f} ms (target < 300 ms)")
    return out


def chart(results, meta, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    qs = meta["queries"]
    engines = [e for e in meta["engines"] if any(r["engine"] == e and r.get("eps")
                                                 for r in results)]
    fig, ax = plt.subplots(figsize=(max(10, 1.2 * len(qs)), 5))
    width = 0.8 / max(1, len(engines))
    for i, e in enumerate(engines):
        vals = []
        for q in qs:
            r = next((r for r in results if r["engine"] == e and r["query"] == q), None)
            vals.append(r["eps"] / 1e6 if r and r.get("eps") else 0)
        xs = [j + i * width for j in range(len(qs))]
        ax.bar(xs, vals, width, label=e)
        for x, v in zip(xs, vals):
            if v:
                ax.text(x, v, f"{v:.1f}" if v >= 1 else f"{v:.2f}", ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(len(qs))])
    ax.set_xticklabels(qs)
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_ylabel("million events per CPU-second (log scale; higher is better)")
    ax.set_title(f"{meta['rows']:,} bids (Nexmark: and N/10 auctions, N/20 people) from CSV, "
                 f"parallelism {meta['parallelism']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------- main ----
def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--queries", default=",".join(queries.QUERIES))
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--checkpoint-interval", default="5s")
    p.add_argument("--weir-bin", type=Path, default=ROOT / "target" / os.environ.get("PROFILE", "dist") / "weir")
    p.add_argument("--bench-bin", type=Path, default=ROOT / "target" / os.environ.get("PROFILE", "dist") / "weir-bench")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--note", action="append", default=[],
                   help="a line for the report's notes (say what binary ran, and why)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip writing and comparing result rows (Flink then runs once)")
    args = p.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    qs = [q for q in args.queries.split(",") if q]
    for e in engines:
        if e not in ENGINES:
            p.error(f"unknown engine {e}; expected some of {','.join(ENGINES)}")
    for q in qs:
        if q not in queries.QUERIES:
            p.error(f"unknown query {q}; expected some of {','.join(queries.QUERIES)}")

    data = Data(args, qs)
    work = BENCH / "data" / f"results-{args.rows}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)

    meta = {"rows": args.rows, "queries": qs, "engines": engines, "parallelism": args.parallelism,
            "checkpoint_interval": args.checkpoint_interval,
            "data": {t: {"path": str(Path(p).relative_to(ROOT)), "rows": data.rows[t],
                         "mb": Path(p).stat().st_size / 1e6} for t, p in data.paths.items()},
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} cores, shared", "notes": list(args.note)}

    if any(e.startswith("weir") for e in engines):
        log("startup ...")
        meta["startup_runs"] = weir_startup(args)
        meta["startup_ms"] = statistics.median(meta["startup_runs"])
        log(f"  {meta['startup_ms']:.0f} ms")
        log("100K-row job ...")
        meta["small_job_runs"] = weir_small_job(args, args.bench_bin)
        meta["small_job_ms"] = statistics.median(meta["small_job_runs"])
        log(f"  {meta['small_job_ms']:.0f} ms")

    runners = {
        "weir": lambda q, out: run_weir_stream(args, q, data.of(q), out, checkpoint=False),
        "weir-ckpt": lambda q, out: run_weir_stream(args, q, data.of(q), out, checkpoint=True),
        "weir-batch": lambda q, out: run_weir_batch(args, q, data.of(q), out),
        "flink": lambda q, out: run_flink(args, q, data.of(q), out, "stream"),
        "flink-batch": lambda q, out: run_flink(args, q, data.of(q), out, "batch"),
        "duckdb": lambda q, out: run_duckdb(args, q, data.of(q), out),
    }
    results, failed = [], False
    skipped = {}
    for q in qs:
        for e in engines:
            row = {"query": q, "engine": e}
            results.append(row)
            if e in skipped:
                row["status"] = skipped[e]
                continue
            out = work / f"{q}-{e}" if e.startswith("flink") else work / f"{q}-{e}.csv"
            log(f"{q} / {e} ...")
            try:
                row.update(runners[e](q, out))
                row["status"] = "ok"
                row["out"] = str(out)
                row["events"] = data.events(q)
                row["eps"] = row["events"] / row["cpu"] if row["cpu"] else None
            except Unsupported as u:
                row["status"] = str(u)
            except Skipped as s:
                row["status"] = skipped[e] = str(s)
            except Exception as x:  # an engine that breaks fails the run, with the reason shown
                row["status"] = f"error: {str(x).splitlines()[0][:200]}"
                failed = True
            log(f"  {row['status']} {fmt(row.get('wall'), '.2f')} s wall, "
                f"{fmt(row.get('cpu'), '.2f')} s CPU")

        # The result check: every engine against one reference.
        ran = [r for r in results if r["query"] == q and r["status"] == "ok"]
        ref = next((r for r in ran if r["engine"] == "duckdb"), ran[0] if ran else None)
        if args.check and ref:
            for r in ran:
                missing, extra, rows = compare(q, ref["out"], r["out"])
                r["rows"] = rows
                if r is ref:
                    r["check"] = "reference"
                elif missing == 0 and extra == 0:
                    r["check"] = f"= {ref['engine']}"
                else:
                    r["check"] = f"MISMATCH: {missing} missing, {extra} extra"
                    failed = True
        # Ratios to Weir streaming, or Weir batch where streaming did not run.
        base = next((r for r in ran if r["engine"] == "weir"), None) or \
            next((r for r in ran if r["engine"] == "weir-batch"), None)
        for r in ran:
            if base:
                r["cpu_ratio"] = r["cpu"] / base["cpu"] if base["cpu"] else None
                r["wall_ratio"] = r["wall"] / base["wall"] if base["wall"] else None

    if any(r["engine"] == "flink-batch" and r["query"] == "session" and r["status"] == "ok"
           for r in results):
        meta["notes"].append("Flink batch has no session windows (2.x: \"not supported in batch "
                             "mode yet\"); it computes sessions with LAG and a running SUM.")
    if any(r["engine"] == "flink" and r["query"].startswith("q") and r["status"] == "ok"
           for r in results):
        meta["notes"].append("Flink streaming runs the Nexmark queries with the table settings of "
                             "the Nexmark repository's Flink configuration (mini-batch on: 2 s, "
                             "50,000 rows); the other queries with Flink's defaults.")
    if getattr(args, "no_checkpoint_flag", False):
        meta["notes"].append("This weir build has no --checkpoint-interval flag: `weir` ran without "
                             "it (no checkpoints) and `weir-ckpt` could not run.")
    md = report(results, meta, args.out)
    print(md.read_text())
    log(f"wrote {md}, {md.with_suffix('.png')} and {md.with_suffix('.json')}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

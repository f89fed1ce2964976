"""`dasd`: one subcommand per pipeline stage (the DVC stages call these; generated from the stage registry,
engine/stages.py), plus `dasd sql` (query any stage's output) and `dasd params check`.

Every stage reads params.yaml (or --params) from the project root, found from any working directory
(the nearest parent holding dvc.yaml, or $DASD_ROOT), checks the whole file against its schema before
doing any work, and writes under data/ and metrics/ there. A mistake the user can fix (params, input, a
stage run out of order) is one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import params as P
from . import stages
from .errors import UserError
from .sql import VIEWS as SQL_VIEWS

EPILOG_TAIL = """
query any stage's output:
  dasd sql "SELECT finish_reason, count(*) FROM generations GROUP BY ALL"
check a params file (the whole schema, nothing run):
  dasd params check [--params profiles/paper.yaml]
"""


def _epilog() -> str:
    lines = ["pipeline (dvc repro runs these in order):"]
    lines += [f"  {s.name:14s} {s.summary}" for s in stages.registry().values() if s.dvc]
    lines += ["", "not a stage:"] + [f"  {s.name:14s} {s.summary}" for s in stages.registry().values() if not s.dvc]
    return "\n".join(lines) + "\n" + EPILOG_TAIL


def _load(args) -> tuple[Path, dict]:
    root = P.project_root()
    return root, P.load(Path(args.params) if args.params else root / "params.yaml")


def run_stage(args) -> None:
    from . import numerics

    stage = args.dasd_stage
    mode = stages.mode(stage)
    main = mode.main if mode and mode.wanted(args) else stage.main
    try:
        root, params = _load(args)
    except P.ParamsError:
        if args.params or main is stage.main:
            raise
        root, params = Path.cwd(), {"_path": "(defaults: no project here)"}  # `dasd filter --input` anywhere
    stages.check(params, set(stage.sections))  # the whole file, before the stage looks at anything
    # before any stage loads torch: the default profile's bits, whatever the machine; any other profile's
    # the same when a shard runs again (resume, a lost replica)
    if not numerics.pin_for(params):
        numerics.steady()
    main(stages.Run(stage, args, root, params))


def cmd_params(args) -> None:
    root, params = _load(args)
    built = stages.check(params)
    print(f"{params['_path']}: ok ({len(built)} sections checked)")


def cmd_sql(args):
    import duckdb

    from . import sql

    root = P.project_root()
    con, views = sql.read_only(root / "data")
    query = args.query
    if query.endswith(".sql") and Path(query).exists():
        query = Path(query).read_text()
    if not views:
        print("note: no stage outputs under data/ yet", file=sys.stderr)
    try:
        sql.check_read_only(con, query)
        rel = con.sql(query)
        if rel is None:
            return
        if args.format == "table":
            rel.show(max_rows=args.max_rows, max_width=200)
            return
        df = rel.to_arrow_table()
    except (duckdb.Error, ValueError) as e:  # the user's query: one line, no traceback
        raise P.StageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if args.format == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(df, sys.stdout.buffer)
    else:
        import json

        for row in df.to_pylist():
            print(json.dumps(row, default=str, ensure_ascii=False))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dasd", description="Data engine for Distribution-Aligned Sequence "
                                "Distillation: teacher samples with token logprobs -> training sets.",
                                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", help="params file (default: params.yaml at the project root)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stages.add_commands(sub)

    s = sub.add_parser("sql", help="query stage outputs with DuckDB (read-only)",
                       description="Runs a query (or a .sql file) with one view per stage output: "
                       + ", ".join(SQL_VIEWS) + ". Only SELECT / EXPLAIN; nothing is written.")
    s.add_argument("query", help="SQL text or path to a .sql file")
    s.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    s.add_argument("--max-rows", type=int, default=40)
    s.set_defaults(func=cmd_sql)

    s = sub.add_parser("params", help="check a params file against the schema",
                       description="`dasd params check`: every section of params.yaml (or --params) checked for "
                       "types, ranges, choices and unknown keys, as every stage does before it runs.")
    s.add_argument("action", choices=["check"])
    s.set_defaults(func=cmd_params)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args) if hasattr(args, "func") else run_stage(args)
    except UserError as e:
        # the user's mistake: one clear line naming the file (and line, field, key), no traceback
        print(f"dasd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

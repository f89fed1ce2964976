"""DuckDB: one connection recipe, the SQL files of `sql/`, and a view over every stage output.

SQL files are named after the table they produce and take parameters through `SET VARIABLE` /
`getvariable('name')`, never through string formatting.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# view name -> glob under data/, one entry per stage output (later stages add theirs here)
VIEWS = {
    "questions": "questions/*.parquet",
    "quarantine": "quarantine/*.parquet",
    "generations": "generations/*/*.parquet",
    "student_scores": "student_scores/*/*.parquet",
}


def connect(memory_limit: str | None = None, threads: int | None = None, temp_directory: str | None = None):
    con = duckdb.connect()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if temp_directory:
        con.execute(f"SET temp_directory = '{temp_directory}'")
    return con


def run_file(con, name: str, **variables):
    """Run sql/<name>.sql with `variables` bound as DuckDB variables; returns the relation."""
    for key, value in variables.items():
        con.execute(f"SET VARIABLE {key} = ?", [value])
    return con.sql((SQL_DIR / f"{name}.sql").read_text())


def register_views(con, data_dir: Path) -> list[str]:
    """A view per stage output that exists under `data_dir`; returns the names created."""
    made = []
    for view, pattern in VIEWS.items():
        if any(Path(data_dir).glob(pattern)):
            path = str(Path(data_dir) / pattern).replace("'", "''")
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM "
                        f"read_parquet('{path}', union_by_name = true, hive_partitioning = false)")
            made.append(view)
    return made

"""DuckDB: one connection recipe, the SQL files of `sql/`, and a view over every stage output.

SQL files are named after the table they produce and take parameters through `SET VARIABLE` /
`getvariable('name')`, never through string formatting.
"""
from __future__ import annotations

from pathlib import Path

import duckdb


def _sql_dir() -> Path:
    """sql/ of the source tree (a checkout, an editable install), else the copy a wheel ships as
    engine/sql_files (pyproject.toml maps one onto the other)."""
    here = Path(__file__).resolve().parent
    return here / "sql_files" if (here / "sql_files").is_dir() else here.parent / "sql"


SQL_DIR = _sql_dir()

# view name -> glob under data/, one entry per stage output (later stages add theirs here)
VIEWS = {
    "questions": "questions/*.parquet",
    "quarantine": "quarantine/*.parquet",
    "decontaminate_kept": "decontaminate/kept.parquet",
    "contamination": "decontaminate/rejections.parquet",  # one row per question, not per response
    "generations": "generations/*/*.parquet",
    "student_scores": "student_scores/*/*.parquet",
    "sentences": "sentences/*/*.parquet",
    "filter_kept": "filter/*/kept.parquet",
    "naturalness": "naturalness/*/*.parquet",
    "dedup_clusters": "dedup/*/clusters.parquet",
    "dedup_kept": "dedup/*/kept.parquet",
    # every stage that removes responses: per temperature (filter, dedup) or not (truncate, mixed_filter)
    "rejections": ["*/*/rejections.parquet", "truncate/rejections.parquet", "mixed_filter/rejections.parquet",
                   "generations/*/rejections-*.parquet.r"],
    "selected": "select/*/selected.parquet",
    "exports": "export/*/train.parquet",
    "rollouts": "rollout/*.parquet",
    "truncated": "truncate/truncated.parquet",
    "continuations": "continue/*.parquet",
    "mixed_kept": "mixed_filter/kept.parquet",
}


def quote_path(path) -> str:
    """A path (or glob) as the inside of a SQL string literal."""
    return str(path).replace("'", "''")


def steady(average: float | None, digits: int = 9) -> float | None:
    """A DuckDB average of doubles as a report (a DVC output) may hold it: DuckDB sums over files and
    threads in no fixed order, so the last digits vary from run to run; rounded, they do not."""
    return None if average is None else round(average, digits)


def connect(memory_limit: str | None = None, threads: int | None = None, temp_directory: str | None = None):
    """A DuckDB connection; with a memory_limit and a temp_directory, big joins spill instead of failing."""
    config = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = int(threads)
    if temp_directory:
        config["temp_directory"] = str(temp_directory)
    return duckdb.connect(config=config)


def run_file(con, name: str, fragments: dict[str, str] | None = None, **variables):
    """Run sql/<name>.sql with `variables` bound as DuckDB variables; returns the relation. `fragments`:
    SQL expressions from one of the engine's registries (never a user's value: those are variables), each
    replacing its `/*@name*/` marker in the file — how a selector declared once in Python becomes a column."""
    for key, value in variables.items():
        con.execute(f"SET VARIABLE {key} = ?", [value])
    text = (SQL_DIR / f"{name}.sql").read_text()
    for marker, fragment in (fragments or {}).items():
        if f"/*@{marker}*/" not in text:
            raise KeyError(f"sql/{name}.sql has no /*@{marker}*/ marker")
        text = text.replace(f"/*@{marker}*/", fragment)
    return con.sql(text)


def create_views(con, sources: dict) -> None:
    """A view per stage input: view name -> a Parquet file, a glob, or a folder (all its *.parquet)."""
    for view, path in sources.items():
        path = Path(path)
        if path.is_dir():
            path = path / "*.parquet"
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{quote_path(path)}')")


def register_views(con, data_dir: Path) -> list[str]:
    """A view per stage output that exists under `data_dir`; returns the names created."""
    made = []
    for view, patterns in VIEWS.items():
        found = [p for p in ([patterns] if isinstance(patterns, str) else patterns) if any(Path(data_dir).glob(p))]
        if found:
            paths = ", ".join(f"'{quote_path(Path(data_dir) / p)}'" for p in found)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM "
                        f"read_parquet([{paths}], union_by_name = true, hive_partitioning = false)")
            made.append(view)
    return made


# what `dasd sql` runs: queries, never statements that write (COPY, ATTACH, EXPORT, CREATE, SET, INSTALL…)
READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


def read_only(data_dir: Path):
    """The connection of `dasd sql`: a view per stage output, then DuckDB's own locks. File access is
    limited to `data_dir` (the views' Parquet files), extensions cannot be installed or loaded, and the
    configuration is locked so no query can lift that. Since an allowed directory is writable for DuckDB,
    `check_read_only` also refuses every statement that is not a query."""
    con = connect()
    views = register_views(con, data_dir)
    allowed = str(Path(data_dir).resolve()).replace("'", "''").rstrip("/") + "/"
    con.execute(f"SET allowed_directories = ['{allowed}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
    return con, views


def check_read_only(con, query: str) -> None:
    """Raise ValueError naming the first statement of `query` that is not a query."""
    for stmt in con.extract_statements(query):
        kind = str(stmt.type).rsplit(".", 1)[-1]
        if kind not in READ_ONLY_STATEMENTS:
            raise ValueError(f"`dasd sql` only reads: {kind} statements are not run (queries only: SELECT, WITH, "
                             "FROM, DESCRIBE, SUMMARIZE, EXPLAIN; to save a result, use --format csv > FILE)")

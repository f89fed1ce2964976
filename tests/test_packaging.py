"""A wheel built from the repository holds every module and every SQL file, and runs from where it is
installed: the SQL a stage runs is found inside the package, and `dasd sql` answers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def test_a_wheel_ships_the_sql_and_runs_it(tmp_path):
    source = tmp_path / "source"  # setuptools builds in the source tree: a copy, so the checkout gets no build/
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("engine", "sql"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("dasd_engine-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sql = sorted(f"engine/sql_files/{p.name}" for p in (REPO / "sql").glob("*.sql"))
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "engine").rglob("*.py"))
    assert sql and not set(sql) - names, f"SQL missing from the wheel: {sorted(set(sql) - names)}"
    assert not set(modules) - names, f"modules missing from the wheel: {sorted(set(modules) - names)}"

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install` puts in site-packages
    project = tmp_path / "project"
    (project / "data" / "select" / "T=0.6").mkdir(parents=True)
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / "params.yaml").write_text("{}\n")
    pq.write_table(pa.table({"response_id": ["a", "b"], "question_id": ["q", "q"]}),
                   project / "data" / "select" / "T=0.6" / "selected.parquet")
    env = {**os.environ, "PYTHONPATH": str(site), "DASD_ROOT": str(project)}
    # the SQL the stages run comes from the installed package, not from a checkout
    where = subprocess.run([sys.executable, "-c", "import engine.sql as s; print(s.SQL_DIR); "
                            "print(len((s.SQL_DIR / 'filter.sql').read_text()))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]) == site / "engine" / "sql_files" and int(where[1]) > 0, where
    out = subprocess.run([sys.executable, "-m", "engine.cli", "sql", "SELECT count(*) AS n FROM selected",
                          "--format", "csv"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.replace('"', "").split() == ["n", "2"], out.stdout

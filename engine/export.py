"""Stage `export@<stage>`: the SFT training set of one phase, as chat `messages` Parquet.

stage1 = the selected low-temperature responses, stage2 = the selected high-temperature ones (which
temperature feeds which phase is params `export.stages`). Readable by `datasets.load_dataset("parquet")`
and by Axolotl's `chat_template` loader (`field_messages: messages`). Schema `tables.EXPORT`.
"""
from __future__ import annotations

from pathlib import Path

from . import sql, tables


def run(stage: str, temperature: float, selected_dir: Path, generations_dir: Path, questions_dir: Path,
        out_dir: Path, metrics_path: Path) -> dict:
    con = sql.connect()
    sql.create_views(con, {"selected": selected_dir, "generations": generations_dir, "questions": questions_dir})
    table = sql.run_file(con, "export_stage").to_arrow_table().cast(tables.EXPORT)
    tables.write_parquet(table, Path(out_dir) / "train.parquet")
    by_domain = {}
    for d in table.column("domain").to_pylist():
        by_domain[d] = by_domain.get(d, 0) + 1
    report = {"stage": stage, "temperature": temperature, "examples": table.num_rows, "by_domain": by_domain}
    tables.write_json(report, metrics_path)
    return report

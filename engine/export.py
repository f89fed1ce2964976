"""Stage `export@<stage>`: the SFT training set of one phase, as chat `messages` Parquet.

stage1 = the selected low-temperature responses, stage2 = the selected high-temperature ones (which
temperature feeds which phase is params `export.stages`). Readable by `datasets.load_dataset("parquet")`
and by Axolotl's `chat_template` loader (`field_messages: messages`). Schema `tables.EXPORT`.

stage3 (params `export.mixed`) = the mixed-policy samples that passed `mixed_filter`, each marked with
where the student's prefix ends, plus `off_policy_samples` rows drawn from the off-policy sets for
balance (sql/export_mixed.sql).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import sql, tables


def run(stage: str, temperature: float, selected_dir: Path, generations_dir: Path, questions_dir: Path,
        out_dir: Path, metrics_path: Path) -> dict:
    con = sql.connect()
    sql.create_views(con, {"selected": selected_dir, "generations": generations_dir, "questions": questions_dir})
    table = sql.run_file(con, "export_stage").to_arrow_table().cast(tables.EXPORT)
    report = {"stage": stage, "temperature": temperature, **write(table, out_dir)}
    tables.write_json(report, metrics_path)
    return report


def write(table: pa.Table, out_dir: Path) -> dict:
    tables.write_parquet(table, Path(out_dir) / "train.parquet")
    return {"examples": table.num_rows, "by_domain": dict(sorted(Counter(table.column("domain").to_pylist()).items()))}


@dataclass
class MixedExportParams:
    name: str = "stage3"               # the exported set's name (data/export/<name>/), a train phase's dataset
    off_policy_samples: int = 20000    # drawn from the off-policy sets (the paper's ablation added 20K)
    off_policy_from: list = field(default_factory=lambda: ["stage1", "stage2"])
    seed: int = 0


def funnel(data: Path, exported: int) -> dict:
    """The mixed-policy phase in counts, stage by stage (the paper: 50K questions -> ~15K truncated ->
    12.7K kept): what each stage's output under `data` holds."""
    def rows(folder: Path, name: str = "*.parquet") -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in Path(folder).glob(name))

    return {"rollouts": rows(data / "rollout"), "truncated": rows(data / "truncate", "truncated.parquet"),
            "continued": rows(data / "continue"), "kept": rows(data / "mixed_filter", "kept.parquet"),
            "exported": exported}


def run_mixed(mp: MixedExportParams, temperature: float, kept_path: Path, continue_dir: Path, questions_dir: Path,
              export_root: Path, metrics_path: Path) -> dict:
    """`temperature`: the continuation's, recorded on the mixed rows."""
    sources = [Path(export_root) / s / "train.parquet" for s in mp.off_policy_from]
    missing = [str(s) for s in [kept_path, *sources] if not s.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: missing; run `dasd mixed_filter` and `dasd export` first")
    con = sql.connect()
    empty = not tables.read_table(continue_dir, columns=["sample_id"])
    sql.create_views(con, {"mixed_kept": kept_path, "questions": questions_dir})
    if empty:  # no continuation at all (no rollout hit its cap): the set is the off-policy draw alone
        con.execute("CREATE VIEW continuations AS SELECT * FROM "
                    "(SELECT NULL::VARCHAR sample_id, NULL::VARCHAR question_id, NULL::VARCHAR text, "
                    "NULL::INTEGER prefix_chars, NULL::DOUBLE cut_fraction) WHERE false")
    else:
        sql.create_views(con, {"continuations": continue_dir})
    files = ", ".join(f"'{sql.quote_path(s)}'" for s in sources)
    con.execute(f"CREATE VIEW off_policy AS SELECT * FROM read_parquet([{files}])")
    table = sql.run_file(con, "export_mixed", temperature=temperature, seed=mp.seed,
                         off_policy_samples=mp.off_policy_samples).to_arrow_table().cast(tables.EXPORT)
    policy = Counter(table.column("policy").to_pylist())
    report = {"stage": mp.name, "mixed": policy.get("mixed", 0), "off_policy": policy.get("off_policy", 0),
              "funnel": funnel(Path(continue_dir).parent, policy.get("mixed", 0)),
              **write(table, out_dir=Path(export_root) / mp.name)}
    tables.write_json(report, metrics_path)
    return report

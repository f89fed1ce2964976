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
from dataclasses import field
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from . import sql, tables
from .params import NonNegative, ParamsError, Seed, StageError, Temperature, schema, temperature_dir
from .stages import Stage, T


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


@schema
class MixedExportParams:
    name: str = "stage3"               # the exported set's name (data/export/<name>/), a train phase's dataset
    off_policy_samples: NonNegative = 20000  # drawn from the off-policy sets (the paper's ablation added 20K)
    off_policy_from: list[str] = field(default_factory=lambda: ["stage1", "stage2"])
    seed: Seed = 0


@schema
class ExportStage:
    temperature: Temperature  # whose selected responses feed the phase


@schema
class ExportParams:
    stages: Annotated[dict[str, ExportStage], Field(min_length=1)]  # SFT phase -> its temperature
    mixed: MixedExportParams = field(default_factory=MixedExportParams)


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
        raise StageError(f"{', '.join(missing)}: missing; run `dasd mixed_filter` and `dasd export` first")
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


def main(ctx) -> None:
    stages = ctx.section("export").stages
    for name in [ctx.args.stage] if ctx.args.stage else list(stages):
        if name not in stages:
            raise ParamsError(f"export.stages has no stage {name!r} (has: {sorted(stages)}; the mixed-policy "
                              "set is `dasd export_mixed`)")
        item = {"key": name, **ctx.value(f"export.stages.{name}")}  # the temperature as params spells it
        r = run(name, stages[name].temperature, ctx.path("select", **item), ctx.path("generations", **item),
                ctx.path("questions"), ctx.path("out", **item), ctx.path("metrics", **item))
        print(f"export {name}: {r['examples']} examples from {temperature_dir(item['temperature'])}")


def main_mixed(ctx) -> None:
    mp = ctx.section("export.mixed")
    r = run_mixed(mp, ctx.value("continue.temperature", 1.0), ctx.path("mixed_filter") / "kept.parquet",
                  ctx.path("continue"), ctx.path("questions"), ctx.root / "data" / "export", ctx.path("metrics"))
    print(f"export_mixed: {mp.name}: {r['examples']} examples ({r['mixed']} mixed-policy, {r['off_policy']} off-policy)")


def _stage_argument(parser) -> None:
    parser.add_argument("--stage", help="one stage of export.stages (default: all)")


STAGES = (
    Stage("export", main, sections={"export": ExportParams}, params=("export.stages",),
          inputs={"select": f"data/select/{T}", "generations": f"data/generations/{T}",
                  "questions": "data/questions"},
          outputs={"out": "data/export/${key}", "metrics": "metrics/export/${key}.json"}, arguments=_stage_argument),
    # writes data/export/<export.mixed.name>; the funnel in its report counts rollout, truncate and continue
    Stage("export_mixed", main_mixed, sections={"export.mixed": MixedExportParams},
          params=("export.mixed", "continue.temperature"),
          inputs={"rollout": "data/rollout", "truncate": "data/truncate", "mixed_filter": "data/mixed_filter",
                  "continue": "data/continue", "questions": "data/questions", "stage1": "data/export/stage1",
                  "stage2": "data/export/stage2"},
          outputs={"out": "data/export/${export.mixed.name}", "metrics": "metrics/export/${export.mixed.name}.json"},
          help="the mixed-policy SFT set (stage 3): mixed_filter's samples + an off-policy draw"),
)

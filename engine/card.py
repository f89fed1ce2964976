"""The dataset card of a published repository, generated from the pipeline's own records.

`records` gathers what the card states from the data and the lock file (never from memory of what
should have happened): the funnel and every rejection rule per temperature × domain (sql/publish_*.sql),
token statistics per config, the question sources and their licenses, and each config's DVC stages with
their output hashes and params (dvc.lock). `render` writes the README: Hub YAML metadata, then prose and
tables. Deterministic: sorted keys, no dates, so the same inputs give the same card.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import yaml

from . import sql
from .params import ParamsError

# environment variables and params keys that hold credentials: never shown, never published
SECRET = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD)$", re.I)
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>100M")


def redact(value, secret=SECRET):
    """Params as the card shows them: any key that looks like a credential is replaced."""
    if isinstance(value, dict):
        return {k: "<redacted>" if secret.search(str(k)) else redact(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secret) for v in value]
    return value


# -- dvc.lock: which stages (and params) produced a config ------------------------------------------

def _produces(out: str, dep: str) -> bool:
    return dep == out or dep.startswith(out.rstrip("/") + "/") or out.startswith(dep.rstrip("/") + "/")


def lineage(lock: dict, targets: list[str]) -> list[str]:
    """`targets` and every stage upstream of them in dvc.lock, by dependency paths; sorted names."""
    stages = lock.get("stages", {})
    seen, todo = set(), [t for t in targets if t in stages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in stages[name].get("deps", []):
            todo += [s for s, rec in stages.items() if s not in seen
                     and any(_produces(o["path"], dep["path"]) for o in rec.get("outs", []))]
    return sorted(seen)


def provenance(lock: dict, stages: list[str]) -> dict:
    out = {}
    for name in stages:
        rec = lock["stages"][name]
        out[name] = {"cmd": rec.get("cmd"),
                     "outs": {o["path"]: o.get("md5") for o in rec.get("outs", [])},
                     "params": rec.get("params", {}).get("params.yaml", {})}
    return out


# -- records ----------------------------------------------------------------------------------------

def _rows(rel) -> list[dict]:
    return rel.to_arrow_table().to_pylist()


def records(con, cfgs, params: dict, root: Path) -> dict:
    from .export import funnel
    from .filter import FilterParams

    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else None
    tokens = {}
    for c in cfgs:
        ids = c.table.select(["response_id"])
        policy = c.table.column("policy") if "policy" in c.table.column_names else \
            pa.array(["off_policy"] * c.table.num_rows, pa.string())
        con.register("config", ids.append_column("policy", policy))
        tokens[c.name] = _rows(sql.run_file(con, "publish_tokens"))
        con.unregister("config")
    targets = {c.name: [s for s in lock["stages"] if s.startswith("select@")] if c.stage is None else [c.stage]
               for c in cfgs} if lock else {}
    mixed = next((c for c in cfgs if c.kind == "mixed"), None)
    try:
        thresholds = FilterParams(**params.get("filter", {})).thresholds()
    except (TypeError, ParamsError) as e:
        raise ParamsError(f"params filter: {e}") from None
    return {
        "sampling": _rows(sql.run_file(con, "publish_sampling")),
        "funnel": _rows(sql.run_file(con, "publish_funnel")),
        "rules": _rows(sql.run_file(con, "publish_rules")),
        "mixed_funnel": funnel(root / "data", sum(p == "mixed" for p in mixed.table.column("policy").to_pylist()))
        if mixed else None,
        "tokens": tokens,
        "sources": _rows(con.sql("SELECT source, domain, license, count(*) AS questions FROM questions "
                                 "GROUP BY ALL ORDER BY source, domain")),
        "thresholds": thresholds,
        "lock": redact({name: provenance(lock, lineage(lock, t)) for name, t in targets.items()}, SECRET) if lock else None,
        "params": redact(params, SECRET),
    }


# -- rendering --------------------------------------------------------------------------------------

def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(none)_\n"
    columns = columns or list(rows[0])

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _yaml_block(value) -> str:
    return "```yaml\n" + yaml.safe_dump(value, sort_keys=True, allow_unicode=True, width=110) + "```\n"


def metadata(pp, cfgs, rows: int) -> str:
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        license=pp.license, language=list(pp.language), pretty_name=pp.pretty_name,
        task_categories=["text-generation"], size_categories=[size_category(rows)],
        tags=["reasoning", "distillation", "dasd", "chain-of-thought", "synthetic"],
        configs=[{"config_name": c.name, "data_files": [{"split": "train", "path": f"{c.name}/train-*.parquet"}],
                  **({"default": True} if i == 0 else {})} for i, c in enumerate(cfgs)])
    return data.to_yaml()


def _model(m: dict | None) -> str:
    if not m:
        return "_(not in params)_"
    return ", ".join(f"{k} `{m[k]}`" for k in ("model", "revision", "backend", "format") if m.get(k) is not None)


def render(pp, repo_id: str, cfgs, shards: dict, rec: dict, plot_path: str | None) -> str:
    p = rec["params"]
    rows = sum(c.table.num_rows for c in cfgs)
    out = ["---", metadata(pp, cfgs, rows).rstrip("\n"), "---", ""]
    out += [f"# {pp.pretty_name}", "",
            "Reasoning-distillation training data built by the DASD data engine: a teacher's responses sampled at a "
            "low and a high temperature with every token's logprob under teacher and student, quality filters, "
            "MinHash deduplication, divergence-aware selection (DAS) of the responses the student most needs, and a "
            "mixed-policy set where the teacher continues the student's own truncated answers. Every figure below is "
            "read from the pipeline's outputs and its `dvc.lock`.", "",
            "## Configs", "",
            table([{"config": f"`{c.name}`", "rows": c.table.num_rows, "shards": len(shards[c.name]),
                    "what it is": c.description} for c in cfgs]),
            "```python", "from datasets import load_dataset",
            f'ds = load_dataset("{repo_id}", "{cfgs[0].name}", split="train")' if cfgs else "", "```", "",
            "Training sets hold chat `messages` (system, user, assistant: `<think>…</think>` then the answer). On a "
            "mixed-policy row the assistant message's `train_detail` marks the student's prefix (`train: false`) and "
            "the teacher's continuation (`train: true`), character offsets with an inclusive end (Axolotl's "
            "`message_field_training_detail`).", ""]
    out += ["## Models", "", f"- Teacher: {_model(p.get('teacher'))}", f"- Student: {_model(p.get('student'))}", ""]
    g = p.get("generate", {})
    out += ["## Sampling", "", "Read from the teacher's samples:", "", table(rec["sampling"]), "",
            f"Sampling params: top_p {g.get('top_p')}, max_tokens {g.get('max_tokens')}, seed {g.get('seed')} "
            "(`generate` in params.yaml; an imported set was sampled by its publisher).", ""]
    out += ["## Filters", "", "A response is rejected when a rule's measured value exceeds its threshold "
            "(`engine/rules.py` defines each rule); rules absent here are off.", "",
            table([{"rule": k, "threshold": v} for k, v in sorted(rec["thresholds"].items())]), "",
            "Near-duplicates (MinHash over word shingles, LSH, verified):", "",
            _yaml_block({"dedup": p.get("dedup", {})})]
    s = p.get("select", {})
    out += ["## Selection", "",
            f"Selector `{s.get('selector')}`, top {s.get('top_k')} per question, measure `{s.get('das_measure')}`; a "
            f"sentence is a teacher sentence when p_teacher − p_student > β = {p.get('sentences', {}).get('beta')}. "
            "Phase → temperature: " + ", ".join(f"{k} T={v['temperature']:g}" for k, v in
                                               p.get("export", {}).get("stages", {}).items()) + ".", ""]
    if plot_path:
        out += [f"![response probability under teacher and student, selected vs random]({plot_path})", ""]
    out += ["## Counts", "", "Per temperature and domain, kept + rejected = in at every stage (dedup's input is "
            "what the filter kept):", "", table(rec["funnel"]), "",
            "Rejections by rule (a response failing two rules counts under both):", "", table(rec["rules"]), ""]
    if rec["mixed_funnel"]:
        out += ["Mixed-policy phase:", "", table([rec["mixed_funnel"]]), ""]
    out += ["## Token statistics", "", "Per config and policy: off-policy rows count the teacher response in both "
            "tokenizers; mixed rows count the teacher's continuation (teacher tokens) and the student's prefix "
            "(student tokens).", ""]
    for name, trows in rec["tokens"].items():
        out += [f"`{name}`:", "", table(trows), ""]
    out += ["## Question sources", "", table(rec["sources"]), "",
            _yaml_block({"sources": p.get("questions", {}).get("sources", [])})]
    out += ["## Provenance", ""]
    if rec["lock"] is None:
        out += ["No `dvc.lock`: these tables were not produced by `dvc repro`; the params they were built with:", "",
                "<details><summary>params.yaml</summary>", "", _yaml_block(p), "</details>", ""]
    else:
        out += ["The DVC stages (from `dvc.lock`) behind each config, their output hashes and the params each used.", ""]
        for name, stages in rec["lock"].items():
            hashes = [{"stage": st, "output": o, "md5": h} for st, r in stages.items() for o, h in sorted(r["outs"].items())]
            used = {st: r["params"] for st, r in stages.items() if r["params"]}
            out += [f"<details><summary><code>{name}</code>: {len(stages)} stages</summary>", "", table(hashes), "",
                    _yaml_block(used), "</details>", ""]
    out += ["## Reproduce", "", "```bash", "make repro            # or: dvc repro (the params of `params.yaml`)",
            f"dasd publish {repo_id} --dry-run DIR   # this repository, built locally", "```", ""]
    return "\n".join(out)

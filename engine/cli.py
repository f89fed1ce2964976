"""`dasd`: one subcommand per pipeline stage (the DVC stages call these) plus `dasd sql`.

Every stage reads params.yaml (or --params) from the project root, found from any working directory
(the nearest parent holding dvc.yaml, or $DASD_ROOT), and writes under data/ and metrics/ there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import params as P
from .sql import VIEWS as SQL_VIEWS

EPILOG = """pipeline (dvc repro runs these in order):
  miniature      build the default profile's questions and small teacher/student models
  questions      ingest question sources -> data/questions/ (dedup, quarantine, report)
  generate       teacher samples at one temperature -> data/generations/T=<t>/ (resumable)
  score          student logprobs of each teacher response -> data/student_scores/T=<t>/ (resumable)
  sentences      sentences with p_teacher, p_student and type -> data/sentences/T=<t>/
  filter         quality rules -> data/filter/T=<t>/ (kept + one rejection row per failed rule)
  naturalness    optional: local naturalness (student logprob per step, short window) -> data/naturalness/T=<t>/
  dedup          MinHash near-duplicates -> data/dedup/T=<t>/ (keeps each cluster's best by the selector)
  select         divergence-aware selection (or a baseline) -> data/select/T=<t>/
  export         SFT sets: stage1 (low T), stage2 (high T) -> data/export/<stage>/train.parquet
  train          an SFT phase on its set (configs for Axolotl / LLaMA-Factory / TRL) -> data/train/<phase>/
  rollout        mixed policy: the stage-2 student answers, capped at 1.5x the teacher -> data/rollout/
  truncate       keep rollouts that hit the cap, cut each past half -> data/truncate/
  continue       the teacher continues each student prefix -> data/continue/ (resumable)
  mixed_filter   the filter's rules on prefix + continuation -> data/mixed_filter/
  export_mixed   the stage-3 set: mixed-policy samples + off-policy ones -> data/export/stage3/
  evaluate       held-out accuracy of the student before training and after each phase -> metrics/evaluate.json
  publish        frozen: the Hub dataset repository (configs + dataset card) -> data/publish/, then upload

not a stage:
  import         an existing SFT dataset with teacher token logprobs -> data/questions/ + data/generations/T=<t>/

query any stage's output:
  dasd sql "SELECT finish_reason, count(*) FROM generations GROUP BY ALL"
"""


def _ctx(args):
    from . import numerics

    root = P.project_root()
    params = P.load(Path(args.params) if args.params else root / "params.yaml")
    numerics.pin_for(params)  # before any stage loads torch: the default profile's bits, whatever the machine
    return root, params


def _each_temperature(args, params) -> list[tuple[float, str]]:
    """(temperature, its folder name) for --temperature, else for every one of generate.temperatures."""
    configured = params["generate"]["temperatures"]
    temps = [P.temperature_value(args.temperature, configured)] if args.temperature is not None else configured
    return [(float(t), P.temperature_dir(t)) for t in temps]


def cmd_miniature(args):
    from .miniature.stage import MiniatureParams, run

    root, params = _ctx(args)
    report = run(P.section(params, "miniature", MiniatureParams), root / "data" / "miniature",
                 root / "metrics" / "miniature.json", params.get("system_prompt"))
    if report["enabled"]:
        for name in ("teacher", "student"):
            r = report[name]
            print(f"miniature {name}: held-out accuracy {r['accuracy']:.2f}, well-formed {r['well_formed']:.2f}")


def cmd_questions(args):
    from . import questions

    root, params = _ctx(args)
    qp = P.section(params, "questions", P.QuestionsParams)
    report = questions.run(qp, params.get("system_prompt"), root, root / "data" / "questions",
                           root / "data" / "quarantine" / "questions.parquet", root / "metrics" / "questions.json")
    print(f"questions: {report['rows']} rows -> {report['questions']} questions "
          f"({report['duplicates_collapsed']} duplicates collapsed, {report['quarantined']} quarantined)")


def cmd_generate(args):
    from . import generate

    root, params = _ctx(args)
    gp = P.section(params, "generate", P.GenerateParams)
    teacher = P.section(params, "teacher", P.ModelParams)
    for t, d in _each_temperature(args, params):
        report = generate.run(gp, teacher, t, root / "data" / "questions", root / "data" / "generations" / d,
                              root / "metrics" / "generate" / f"{d}.json", progress=not args.no_progress)
        print(f"generate {d}: {report['responses']} responses for {report['questions']} questions, "
              f"{report['teacher_tokens']} teacher tokens")


def cmd_score(args):
    from . import score

    root, params = _ctx(args)
    sp = P.section(params, "score", P.ScoreParams)
    student = P.section(params, "student", P.ModelParams)
    for t, d in _each_temperature(args, params):
        report = score.run(sp, student, t, root / "data" / "generations" / d, root / "data" / "questions",
                           root / "data" / "student_scores" / d, root / "metrics" / "score" / f"{d}.json",
                           progress=not args.no_progress)
        print(f"score {d}: {report['responses']} responses, {report['student_tokens']} student tokens, "
              f"mean student logprob {report['mean_student_logprob']:.3f}")


def cmd_sentences(args):
    from . import sentences

    root, params = _ctx(args)
    sp = P.section(params, "sentences", sentences.SentencesParams)
    for t, d in _each_temperature(args, params):
        r = sentences.run(sp, t, root / "data" / "generations" / d, root / "data" / "student_scores" / d,
                          root / "data" / "sentences" / d, root / "metrics" / "sentences" / f"{d}.json")
        print(f"sentences {d}: {r['sentences']} sentences in {r['responses']} responses, by type {r['by_type']}")


def cmd_filter(args):
    from . import filter as filter_stage

    root, params = _ctx(args)
    fp = P.section(params, "filter", filter_stage.FilterParams)
    for t, d in _each_temperature(args, params):
        r = filter_stage.run(fp, t, root / "data" / "generations" / d, root / "data" / "student_scores" / d,
                             root / "data" / "questions", root / "data" / "filter" / d,
                             root / "metrics" / "filter" / f"{d}.json")
        print(f"filter {d}: {r['input']} in -> {r['kept']} kept, {r['rejected']} rejected "
              f"(by rule: {r['rejections_by_rule']})")


def _pool_inputs(data: Path, kept: Path, d: str) -> dict:
    """What select_candidates scores: the responses still in the pool, their sentences and scores."""
    return {"kept": kept, "sentences": data / "sentences" / d, "student_scores": data / "student_scores" / d,
            "naturalness": data / "naturalness" / d}


def cmd_naturalness(args):
    from . import naturalness

    root, params = _ctx(args)
    np_ = P.section(params, "naturalness", naturalness.NaturalnessParams)
    student = P.section(params, "student", P.ModelParams)
    for t, d in _each_temperature(args, params):
        data = root / "data"
        r = naturalness.run(np_, student, t, {"kept": data / "filter" / d / "kept.parquet",
                                              "sentences": data / "sentences" / d, "generations": data / "generations" / d},
                            data / "questions", data / "naturalness" / d, root / "metrics" / "naturalness" / f"{d}.json",
                            progress=not args.no_progress)
        print(f"naturalness {d}: " + (f"{r['responses']} responses scored step by step (window {r['window']})"
                                      if r["enabled"] else "off (naturalness.enabled: false)"))


def cmd_dedup(args):
    from . import dedup, select

    root, params = _ctx(args)
    dp = P.section(params, "dedup", dedup.DedupParams)
    selp = P.section(params, "select", select.SelectParams)
    for t, d in _each_temperature(args, params):
        data = root / "data"
        r = dedup.run(dp, selp, t, _pool_inputs(data, data / "filter" / d / "kept.parquet", d),
                      data / "generations" / d, data / "dedup" / d, root / "metrics" / "dedup" / f"{d}.json")
        print(f"dedup {d}: {r['input']} in -> {r['kept']} kept, {r['rejected']} near-duplicates removed "
              f"({r['duplicate_clusters']} clusters, {r['candidate_pairs']} candidate pairs)")


def cmd_select(args):
    from . import select

    root, params = _ctx(args)
    sp = P.section(params, "select", select.SelectParams)
    for t, d in _each_temperature(args, params):
        data = root / "data"
        r = select.run(sp, t, _pool_inputs(data, data / "dedup" / d / "kept.parquet", d), data / "select" / d,
                       root / "metrics" / "select" / f"{d}.json", root / "plots" / "select" / f"{d}.csv")
        print(f"select {d}: {r['selected']} chosen by {r['selector']} from {r['candidates']} candidates "
              f"of {r['questions']} questions")


def cmd_export(args):
    from . import export

    root, params = _ctx(args)
    stages = params.get("export", {}).get("stages", {})
    names = [args.stage] if args.stage else list(stages)
    for name in names:
        if name not in stages:
            raise P.ParamsError(f"export.stages has no stage {name!r} (has: {sorted(stages)}; the mixed-policy "
                                "set is `dasd export_mixed`)")
        t = stages[name]["temperature"]
        d, data = P.temperature_dir(t), root / "data"
        r = export.run(name, t, data / "select" / d, data / "generations" / d, data / "questions",
                       data / "export" / name, root / "metrics" / "export" / f"{name}.json")
        print(f"export {name}: {r['examples']} examples from T={t}")


def cmd_export_mixed(args):
    from . import continuation, export

    root, params = _ctx(args)
    mp = P.section(params.get("export", {}), "mixed", export.MixedExportParams)
    t = P.section(params, "continue", continuation.ContinueParams).temperature  # recorded on the mixed rows
    data = root / "data"
    r = export.run_mixed(mp, t, data / "mixed_filter" / "kept.parquet", data / "continue", data / "questions",
                         data / "export", root / "metrics" / "export" / f"{mp.name}.json")
    print(f"export_mixed: {mp.name}: {r['examples']} examples ({r['mixed']} mixed-policy, {r['off_policy']} off-policy)")


def cmd_train(args):
    from . import train

    root, params = _ctx(args)
    tp = P.section(params, "train", train.TrainParams)
    for name in [args.phase] if args.phase else list(tp.phases):
        r = train.run(tp, name, root, root / "metrics" / "train" / f"{name}.json")
        if tp.trainer == "trl":
            print(f"train {name}: {r['steps']} steps on {r['examples']} examples, loss {r['first_loss']:.3f} -> "
                  f"{r['last_loss']:.3f} ({r['runtime_s']} s)")


def cmd_rollout(args):
    from . import rollout

    root, params = _ctx(args)
    rp = P.section(params, "rollout", rollout.RolloutParams)
    r = rollout.run(rp, root / "data" / "export" / rp.source, root / "data" / "rollout", root / "metrics" / "rollout.json",
                    progress=not args.no_progress)
    print(f"rollout: {r['rollouts']} student answers, {r['hit_cap']} hit their cap (mean cap {r['mean_cap'] or 0:.0f} tokens)")


def cmd_truncate(args):
    from . import truncate

    root, params = _ctx(args)
    r = truncate.run(P.section(params, "truncate", truncate.TruncateParams), root / "data" / "rollout",
                     root / "data" / "truncate", root / "metrics" / "truncate.json",
                     min_chars=params.get("sentences", {}).get("min_chars", 8))
    print(f"truncate: {r['input']} rollouts -> {r['truncated']} cut (by rule: {r['rejections_by_rule']})")


def cmd_continue(args):
    from . import continuation

    root, params = _ctx(args)
    r = continuation.run(P.section(params, "continue", continuation.ContinueParams),
                         P.section(params, "teacher", P.ModelParams), root / "data" / "truncate", root / "data" / "questions",
                         root / "data" / "continue", root / "metrics" / "continue.json", progress=not args.no_progress)
    print(f"continue: {r['continued']} of {r['input']} prefixes continued by the teacher (boundary: {r['boundary']})")


def cmd_mixed_filter(args):
    from . import filter as filter_stage
    from . import mixed_filter

    root, params = _ctx(args)
    from .dedup import DedupParams

    r = mixed_filter.run(P.section(params, "filter", filter_stage.FilterParams), P.section(params, "student", P.ModelParams),
                         root / "data" / "continue", root / "data" / "questions", root / "data" / "mixed_filter",
                         root / "metrics" / "mixed_filter.json", P.section(params, "mixed_filter", mixed_filter.MixedFilterParams),
                         P.section(params, "dedup", DedupParams))
    print(f"mixed_filter: {r['input']} in -> {r['kept']} kept, {r['rejected']} rejected (by rule: {r['rejections_by_rule']})")


def cmd_evaluate(args):
    from . import evaluate

    root, params = _ctx(args)
    r = evaluate.run(P.section(params, "evaluate", evaluate.EvaluateParams), root, params.get("system_prompt"),
                     root / "metrics" / "evaluate.json", root / "plots" / "evaluate.csv")
    for name, m in r.get("models", {}).items():
        print(f"evaluate {name}: accuracy {m['accuracy']:.3f}, well-formed {m['well_formed']:.2f}")


def cmd_publish(args):
    from . import publish

    root, params = _ctx(args)
    pp = P.section(params, "publish", publish.PublishParams)
    if args.private is not None:
        pp.private = args.private
    r = publish.run(pp, args.repo_id, params, root, Path(args.dry_run) if args.dry_run else None)
    print(f"publish {r['repo_id']}: " + ", ".join(f"{k} {v} rows" for k, v in r["configs"].items())
          + f" -> {r['folder']} ({len(r['files'])} files)")
    print(f"uploaded: {r['uploaded']}" if r["uploaded"] else
          "dry run: nothing uploaded (--dry-run, or params publish.dry_run: true)")


def _table_spec(where: str, root: Path, config: str | None, split: str) -> dict:
    """A local file/folder (relative to the working directory or the project root) or a Hub dataset id."""
    for base in (Path.cwd(), root):
        if (base / where).exists():
            return {"path": str((base / where).resolve()), "config": config, "split": split}
    return {"hf": where, "config": config, "split": split}


def cmd_import(args):
    from . import importer

    root, params = _ctx(args)
    teacher = P.section(params, "teacher", P.ModelParams)
    if args.teacher_model:
        teacher.model = args.teacher_model
    if args.tokenizer:
        teacher.options = {**teacher.options, "tokenizer": args.tokenizer}
    if args.format:
        teacher.format = args.format
    source = {**_table_spec(args.source, root, args.config, args.split), "license": args.license,
              "fields": {"id": args.id_field, "question": args.question_field, "response": args.response_field},
              **({"domain": args.domain} if args.domain else {"domain_field": args.domain_field})}
    if args.answer_field:
        source["fields"]["answer"] = args.answer_field
    logprobs = None
    if args.logprobs:
        logprobs = {**_table_spec(args.logprobs, root, args.logprobs_config, args.split),
                    "fields": {"id": args.logprobs_id_field, "token_ids": args.token_ids_field,
                               "logprobs": args.logprobs_field}}
    t = P.temperature_value(args.temperature, params.get("generate", {}).get("temperatures", []))
    ip = importer.ImportParams(source=source, logprobs=logprobs, temperature=t,
                               logprobs_mode=args.logprobs_mode, finish_reason=args.finish_reason,
                               on_error=args.on_error)
    r = importer.run(ip, teacher, params.get("system_prompt"), root, root / "data", root / "metrics",
                     progress=not args.no_progress)
    print(f"import: {r['rows']} rows -> {r['imported']} responses of {r['questions']} questions in "
          f"data/generations/{r['folder']}/, {r['quarantined']} quarantined "
          f"(data/quarantine/import-{r['folder']}.parquet: {r['quarantined_by_reason']})")


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


def _command(sub, name: str, func, help_: str, description: str, per_temperature: bool = False,
             progress: bool = False) -> argparse.ArgumentParser:
    """One subcommand. `per_temperature`: the stage runs once per temperature (one DVC matrix stage
    each); `progress`: the stage is long (model calls) and shows a progress bar."""
    s = sub.add_parser(name, help=help_, description=description)
    if per_temperature:
        s.add_argument("--temperature", help="one temperature (default: all of generate.temperatures)")
    if progress:
        s.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    s.set_defaults(func=func)
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dasd", description="Data engine for Distribution-Aligned Sequence "
                                "Distillation: teacher samples with token logprobs -> training sets.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", help="params file (default: params.yaml at the project root)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(sub, "miniature", cmd_miniature, "build the default profile's questions and small models",
             "Writes data/miniature/: a procedural arithmetic question set and a small "
             "teacher and student (different tokenizers) built on CPU from params `miniature`.")

    _command(sub, "questions", cmd_questions, "ingest question sources into data/questions/",
             "Reads every source of params `questions.sources` (JSONL/JSON/Parquet/CSV, "
             "gzip or not, Hub or local datasets), maps columns, collapses exact duplicates, and "
             "writes data/questions/, data/quarantine/questions.parquet and metrics/questions.json.")

    _command(sub, "generate", cmd_generate, "sample the teacher at a temperature (resumable)",
             "n teacher samples per question with every sampled token's logprob and "
             "character span, into data/generations/T=<t>/. Safe to kill and rerun: finished "
             "shards are kept; a change of output-changing params starts clean.",
             per_temperature=True, progress=True)

    _command(sub, "score", cmd_score, "student logprobs of every teacher response (resumable)",
             "Teacher-forces the student on system + question + each teacher response "
             "(tokenised by the student's tokenizer) and stores every token's logprob, rank and "
             "character span in data/student_scores/T=<t>/. Resumable like generate.",
             per_temperature=True, progress=True)

    _command(sub, "sentences", cmd_sentences, "split responses into sentences, align both models, type them",
             "Splits each response into sentences (rules in engine/sentences.py), assigns "
             "every teacher and student token to its sentence by character span, and writes "
             "p_teacher, p_student and the type (teacher | student | shared for margin beta) to "
             "data/sentences/T=<t>/.", per_temperature=True)

    _command(sub, "filter", cmd_filter, "quality rules: length, structure, repetition, truncation",
             "Measures every response (student-token length, <think> structure, tool "
             "calls, truncation, Gopher-style repetition, runaway loops) and rejects those over the "
             "thresholds of params `filter.rules`: data/filter/T=<t>/{kept,rejections}.parquet, one "
             "rejection row per failed rule.", per_temperature=True)

    _command(sub, "naturalness", cmd_naturalness, "local naturalness of each kept response (optional selector)",
             "With params naturalness.enabled: true, the student scores every step "
             "(sentence) of each kept response given the question and only the `window` steps before "
             "it; a response's local naturalness is the mean step logprob (select.selector: "
             "local_naturalness). Off by default: writes an empty table. Resumable like score.",
             per_temperature=True, progress=True)

    _command(sub, "dedup", cmd_dedup, "near-duplicate removal with MinHash + LSH",
             "Among the responses the filter kept: MinHash signatures of word n-grams, "
             "LSH candidate pairs within each question (or the pool), verified at params "
             "`dedup.threshold`; each cluster keeps the response the selector scores highest. "
             "Writes data/dedup/T=<t>/{kept,clusters,rejections}.parquet.", per_temperature=True)

    _command(sub, "select", cmd_select, "per question, keep the response the student most needs (DAS)",
             "Scores every kept response with every selector (das, random, "
             "global_naturalness, local_naturalness, rank_surprisal) and keeps the top_k per question by params "
             "`select.selector`: data/select/T=<t>/selected.parquet.", per_temperature=True)

    s = _command(sub, "export", cmd_export, "write an SFT phase's training set as messages Parquet",
                 "Joins the selected responses of the phase's temperature (params "
                 "`export.stages`) with their questions into data/export/<stage>/train.parquet.")
    s.add_argument("--stage", help="one stage of export.stages (default: all)")

    s = _command(sub, "train", cmd_train, "one SFT phase: render every trainer's config, run the configured one",
                 "Renders the phase's Axolotl, LLaMA-Factory and TRL configs from params `train` "
                 "(hyperparameters in one place) into data/train/<phase>/configs/ and, with trainer: trl, "
                 "trains here (the default profile's CPU runner) into data/train/<phase>/model.")
    s.add_argument("--phase", help="one phase of train.phases (default: all, in order)")

    _command(sub, "rollout", cmd_rollout, "mixed policy: the stage-2 student answers questions of the selected set",
             "Draws params `rollout.questions` questions from the exported set `rollout.source` "
             "and samples the student `rollout.student` once per question, capped at ceil(length_factor x "
             "the teacher response's length in student tokens): data/rollout/. Resumable like generate.",
             progress=True)

    _command(sub, "truncate", cmd_truncate, "keep rollouts that hit their cap; cut each past half",
             "Rollouts that finished on their own are rejected (not_truncated); each other "
             "one is cut at a seeded uniform fraction in params `truncate.cut`, on a student token boundary "
             "(or the next sentence end with snap: sentence): data/truncate/{truncated,rejections}.parquet.")

    _command(sub, "continue", cmd_continue, "the teacher continues each truncated student prefix",
             "Renders the conversation, appends the prefix inside the assistant turn (harmony "
             "channels for gpt-oss) and samples the teacher's continuation with its logprobs: "
             "data/continue/ (joined text, boundary check). Resumable like generate.", progress=True)

    _command(sub, "mixed_filter", cmd_mixed_filter, "the filter's rules on every joined mixed-policy response",
             "Params `filter` on prefix + continuation, plus the boundary rule: "
             "data/mixed_filter/{kept,rejections}.parquet, one rejection row per failed rule.")

    _command(sub, "export_mixed", cmd_export_mixed, "the mixed-policy SFT set (stage 3) as messages Parquet",
             "mixed_filter's kept samples (student prefix + teacher continuation, the prefix "
             "marked per message in `train_detail`) plus params `export.mixed.off_policy_samples` rows "
             "drawn from the off-policy sets: data/export/<export.mixed.name>/train.parquet.")

    _command(sub, "evaluate", cmd_evaluate, "the student's held-out accuracy before training and after each phase",
             "Each model of params `evaluate.models` (the base student, then each SFT phase's) answers the "
             "miniature's held-out problems (`samples` sampled answers each, or greedy): exact-match accuracy "
             "by level and well-formedness in metrics/evaluate.json, a plot in plots/evaluate.csv.")

    s = _command(sub, "publish", cmd_publish, "build the Hub dataset repository and its card; upload it",
                 "Builds the whole Hub dataset repository in a folder: one config per exported set "
                 "(<stage>_low_temperature, <stage>_high_temperature, <name>_mixed_policy) and `candidates` "
                 "(every teacher response with both models' token logprobs), Parquet shards in the Hub layout, "
                 "and a README dataset card generated from the pipeline's records (counts per rule and domain, "
                 "token statistics, models, thresholds, dvc.lock hashes and params). Without a dry run (--dry-run "
                 "DIR, or params publish.dry_run: true as in the default profile) it then creates the repository "
                 "if needed and uploads params publish.folder, deleting stale shards. The token comes from "
                 "HF_TOKEN or `hf auth login` and is never printed or written. The DVC stage is frozen: "
                 "`dvc repro` never uploads.")
    s.add_argument("repo_id", nargs="?", metavar="REPO_ID", help="owner/name (default: params publish.repo_id)")
    s.add_argument("--private", dest="private", action="store_true", default=None,
                   help="create the repository private (default: params publish.private; an existing "
                        "repository keeps its visibility)")
    s.add_argument("--public", dest="private", action="store_false", help="create it public")
    s.add_argument("--dry-run", metavar="DIR", help="build the repository in DIR and upload nothing")

    s = _command(sub, "import", cmd_import, "an existing SFT dataset with teacher token logprobs -> generation tables",
                 "Turns a released SFT dataset whose teacher token logprobs are published (e.g. the DASD authors': "
                 "an SFT table uuid/input/output/domain and a logprob table sample_uuid/token_ids/logprobs, token ids "
                 "in gpt-oss's tokenizer) into data/questions/ and data/generations/T=<t>/, rebuilding each response "
                 "from its token ids with the teacher's tokenizer and format (params `teacher`, or --tokenizer / "
                 "--format) and checking it against the released text. Rows that cannot be imported go to "
                 "data/quarantine/import-T=<t>.parquet with file, line, field and reason. Then run `dasd score`, "
                 "`sentences`, `filter`, `dedup`, `select`, `export` as usual. Resumable.", progress=True)
    s.add_argument("source", help="the SFT table: a local file or folder, or a Hub dataset id")
    s.add_argument("--logprobs", help="the logprob table (file, folder or Hub id); default: columns of SOURCE")
    s.add_argument("--config", help="Hub config of SOURCE")
    s.add_argument("--logprobs-config", help="Hub config of the logprob table")
    s.add_argument("--split", default="train")
    s.add_argument("--temperature", default="1.0", help="the temperature the teacher sampled at")
    s.add_argument("--id-field", default="uuid")
    s.add_argument("--question-field", default="input")
    s.add_argument("--response-field", default="output")
    s.add_argument("--answer-field", help="a reference answer column, if any")
    s.add_argument("--domain-field", default="domain", help="the column holding math|code|science|instruction")
    s.add_argument("--domain", help="one domain for every row instead of --domain-field")
    s.add_argument("--license", help="the source's license, recorded on every question")
    s.add_argument("--logprobs-id-field", default="sample_uuid")
    s.add_argument("--token-ids-field", default="token_ids")
    s.add_argument("--logprobs-field", default="logprobs")
    s.add_argument("--logprobs-mode", default="raw_logprobs", choices=["raw_logprobs", "processed_logprobs"],
                   help="what the released logprobs are: the teacher's own distribution, or after temperature")
    s.add_argument("--finish-reason", default="stop", choices=["stop", "length"],
                   help="for responses whose tokens end without a stop token")
    s.add_argument("--teacher-model", help="the teacher's name to record (default: params teacher.model)")
    s.add_argument("--tokenizer", help="the teacher's tokenizer folder (default: params teacher)")
    s.add_argument("--format", choices=["chat", "harmony"], help="the token ids' format (default: params teacher.format)")
    s.add_argument("--on-error", default="quarantine", choices=["quarantine", "raise"])

    s = _command(sub, "sql", cmd_sql, "query stage outputs with DuckDB",
                 "Runs a query (or a .sql file) with one view per stage output: "
                 + ", ".join(SQL_VIEWS) + ".")
    s.add_argument("query", help="SQL text or path to a .sql file")
    s.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    s.add_argument("--max-rows", type=int, default=40)
    return p


def main(argv: list[str] | None = None) -> int:
    from .questions import InputError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (P.ParamsError, InputError, FileNotFoundError, P.StageError) as e:
        # bad params or bad input: one clear line naming the file (and line, field), no traceback
        print(f"dasd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `publish` (frozen in dvc.yaml: `dvc repro` never uploads): the Hub dataset repository.

`build` writes the whole repository into a folder, byte for byte what the Hub will hold:

    README.md                                   the dataset card (engine/card.py), from the records
    <config>/train-00000-of-0000N.parquet       one config per exported set, and `candidates`
    images/probability_distribution.png         the response-probability plot of select@T

Configs: each export stage as `<stage>_low_temperature` / `<stage>_high_temperature` (by where its
temperature sits among generate.temperatures), the mixed-policy set as `<name>_mixed_policy`, and with
params `publish.candidates` every teacher response with both models' token logprobs and the pipeline's
verdicts (sql/publish_candidates.sql). Same inputs, same bytes: nothing depends on time or order of files.

`upload` is the only network part: create_repo + upload_folder (stale shards deleted), the token from
HF_TOKEN or the Hugging Face login, never read here. Before any upload the folder is searched for the
token's value (and every other secret-looking environment value): a hit refuses the upload.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import card, sql, tables
from .params import Count, ParamsError, StageError, schema, temperature_dir
from .stages import Stage

SHARD = "train-{index:05d}-of-{count:05d}.parquet"
# written into every build: the one sign that a folder is the engine's own and may be replaced
MARKER = ".dasd-publish"
PLOT = "images/probability_distribution.png"


@schema
class PublishParams:
    repo_id: str | None = None       # owner/name on the Hub (the command line's REPO_ID wins)
    private: bool = True
    dry_run: bool = True             # true: build `folder` only; false: build it, then upload
    folder: str = "data/publish"     # where the repository is built (relative to the project root)
    license: str = "apache-2.0"      # the card's license (the questions' own licenses are listed too)
    pretty_name: str = "DASD reasoning distillation data"
    language: list[str] = field(default_factory=lambda: ["en"])
    candidates: bool = True          # also publish every teacher response with token logprobs
    max_shard_rows: Count = 50000      # rows per Parquet shard

    def __post_init__(self):
        if self.max_shard_rows < 1:
            raise ParamsError("publish.max_shard_rows must be >= 1")


@dataclass
class Config:
    name: str              # the Hub config name
    table: pa.Table
    description: str
    stage: str | None      # the DVC stage whose output it is (its dvc.lock record), None: several
    kind: str              # export | mixed | candidates


def temperature_label(t: float, temperatures: list[float]) -> str:
    if len(temperatures) > 1 and t == min(temperatures):
        return "low_temperature"
    if len(temperatures) > 1 and t == max(temperatures):
        return "high_temperature"
    return "t" + temperature_dir(t).split("=", 1)[1].replace(".", "_")


def _views(data: Path):
    """A DuckDB connection with a view per stage output; empty ones (with their schema) for stages not run."""
    con = sql.connect()
    made = set(sql.register_views(con, data))
    for view, empty in {"generations": tables.GENERATIONS, "student_scores": tables.STUDENT_SCORES,
                         "rejections": tables.REJECTIONS, "selected": tables.SELECTED, "rollouts": tables.ROLLOUTS,
                         "truncated": tables.TRUNCATIONS, "continuations": tables.CONTINUATIONS,
                         "questions": tables.QUESTIONS}.items():
        if view not in made:
            con.register(view, empty.empty_table())
    return con


def configs(pp: PublishParams, params: dict, data: Path, con) -> list[Config]:
    temperatures = [float(t) for t in params.get("generate", {}).get("temperatures", [])]
    out = []
    for stage, spec in params.get("export", {}).get("stages", {}).items():
        t = float(spec["temperature"])
        path = data / "export" / stage / "train.parquet"
        if not path.exists():
            raise StageError(f"{path}: missing; run `dasd export --stage {stage}` (or `dvc repro`) first")
        out.append(Config(f"{stage}_{temperature_label(t, temperatures)}", pq.read_table(path),
                          f"SFT phase {stage}: the selected teacher responses sampled at T={t:g}",
                          f"export@{stage}", "export"))
    mixed = params.get("export", {}).get("mixed")
    if mixed:
        name = mixed.get("name", "stage3")
        path = data / "export" / name / "train.parquet"
        if path.exists():
            out.append(Config(f"{name}_mixed_policy", pq.read_table(path),
                              f"SFT phase {name}: student prefixes continued by the teacher (policy mixed), plus "
                              "off-policy rows for balance", "export_mixed", "mixed"))
    if pp.candidates:
        table = sql.run_file(con, "publish_candidates").to_arrow_table()
        out.append(Config("candidates", table, "every teacher response at every temperature with the teacher's "
                          "and the student's token logprobs, the rules it failed and whether it was selected",
                          None, "candidates"))
    return out


def write_shards(table: pa.Table, folder: Path, max_rows: int) -> list[str]:
    """`table` as `folder/train-0000i-of-0000n.parquet`; the shard names relative to the repository root."""
    count = max(1, math.ceil(table.num_rows / max_rows))
    names = []
    for i in range(count):
        path = folder / SHARD.format(index=i, count=count)
        tables.write_parquet(table.slice(i * max_rows, max_rows), path)
        names.append(f"{folder.name}/{path.name}")
    return names


def plot(plots_dir: Path, out: Path) -> bool:
    """The response-probability distributions (plots/select/T=<t>.csv) as one PNG; False when there are none."""
    files = sorted(Path(plots_dir).glob("T=*.csv"))
    if not files:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.csv as pcsv

    fig, axes = plt.subplots(1, len(files), figsize=(5 * len(files), 3.6), squeeze=False)
    for ax, f in zip(axes[0], files):
        t = pcsv.read_csv(f).to_pydict()
        for col, style in (("random_teacher", "C0--"), ("selected_teacher", "C0-"),
                           ("random_student", "C1--"), ("selected_student", "C1-")):
            ax.plot(t["p"], t[col], style, label=col.replace("_", " "))
        ax.set_title(f.stem)
        ax.set_xlabel("response probability (geometric mean of token probabilities)")
        ax.set_ylabel("share of responses")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # no Software/date metadata: the same data gives the same bytes
    fig.savefig(out, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def secrets_in_env() -> list[str]:
    """Values of environment variables that look like credentials (HF_TOKEN, *_API_KEY, …)."""
    return [v for k, v in os.environ.items() if card.SECRET.search(k) and len(v) >= 8]


def _strings(array: pa.Array):
    """Every string inside an Arrow array, however nested (lists, structs, maps, dictionaries)."""
    t = array.type
    if pa.types.is_dictionary(t):
        yield from _strings(array.dictionary)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        yield array
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_map(t):
        yield from _strings(array.flatten())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _strings(array.field(i))


def _decoded_texts(path: Path):
    """What a file of the repository says once read: every string cell and the key-value metadata of a
    Parquet file (compressed pages hide raw bytes), the text chunks of a PNG, else the file's bytes."""
    if path.suffix == ".parquet":
        f = pq.ParquetFile(path)
        meta = f.schema_arrow.metadata or {}
        yield b"\n".join(k + b"=" + v for k, v in meta.items())
        for batch in f.iter_batches(batch_size=8192):
            for column in batch.columns:
                yield from _strings(column)
        return
    blob = path.read_bytes()
    yield blob
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:  # zTXt / iTXt chunks are compressed: read them decoded
            yield "\n".join(f"{k}={v}" for k, v in (getattr(im, "text", None) or im.info).items()).encode()


def assert_no_secrets(folder: Path) -> None:
    """Refuse a repository folder in which any secret environment value appears, decoded: in a string
    cell of a shard, the card, an image's metadata. Names the file, never the value."""
    import pyarrow.compute as pc

    secrets = secrets_in_env()
    if not secrets:
        return
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        for text in _decoded_texts(path):
            if isinstance(text, bytes):
                hit = any(s.encode() in text for s in secrets)
            else:  # a string or binary array (match_substring takes both; binary need not be UTF-8)
                hit = any(pc.any(pc.match_substring(text, s)).as_py() for s in secrets)
            if hit:
                raise StageError(f"{path}: holds the value of a secret environment variable; refusing to publish")


BUILD_FILE = re.compile(r"README\.md|" + re.escape(PLOT) + r"|[\w.-]+/train-\d{5}-of-\d{5}\.parquet")


def _is_build(folder: Path) -> bool:
    """An earlier `dasd publish` build: it holds MARKER, or (built before the marker existed) nothing but a
    dataset card with configs, shards in the Hub layout and the plot."""
    if (folder / MARKER).is_file():
        return True
    files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    card = folder / "README.md"
    text = card.read_text(errors="replace") if card.is_file() else ""
    return (text.startswith("---") and "configs:" in text and any(f.endswith(".parquet") for f in files)
            and all(BUILD_FILE.fullmatch(f) for f in files))


def check_target(out_dir: Path, root: Path) -> None:
    """`out_dir` is replaced whole: only when it is empty, missing, or an earlier build (it holds MARKER)."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise StageError(f"{out_dir}: is a file, not a folder; choose another --dry-run folder")
    inside = out_dir.resolve()
    if inside == Path(root).resolve() or inside in Path(root).resolve().parents:
        raise StageError(f"{out_dir}: is the project folder (or holds it); choose an empty or new folder")
    if any(out_dir.iterdir()) and not _is_build(out_dir):
        raise StageError(f"{out_dir}: not empty and not an earlier `dasd publish` build (no {MARKER} file); "
                         "choose an empty or new folder: nothing was changed")


def build(pp: PublishParams, repo_id: str, params: dict, root: Path, out_dir: Path, progress: bool = True) -> dict:
    """The repository folder `out_dir` (replaced whole, atomically); returns the build report."""
    data = root / "data"
    out_dir = Path(out_dir)
    check_target(out_dir, root)  # before any work: a wrong folder is refused at once
    con = _views(data)
    cfgs = configs(pp, params, data, con)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp's is 0700: the folder is meant to be read (and served) by others
    try:
        shards = {c.name: write_shards(c.table, tmp / c.name, pp.max_shard_rows) for c in cfgs}
        has_plot = plot(root / "plots" / "select", tmp / PLOT)
        records = card.records(con, cfgs, params, root)
        text = card.render(pp, repo_id, cfgs, shards, records, PLOT if has_plot else None)
        (tmp / "README.md").write_text(text, encoding="utf-8")
        assert_no_secrets(tmp)
        (tmp / MARKER).write_text("built by `dasd publish`; the next build replaces this folder\n")
        check_target(out_dir, root)  # still ours after the build (nobody wrote into it meanwhile)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"repo_id": repo_id, "folder": str(out_dir), "configs": {c.name: c.table.num_rows for c in cfgs},
            "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file() and p.name != MARKER)}


def upload(folder: Path, repo_id: str, private: bool, message: str) -> str:
    """Create the dataset repository if needed and make its files exactly `folder`'s; the commit URL."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise StageError("HF_HUB_OFFLINE is set: cannot upload (unset it, or use --dry-run DIR)")
    assert_no_secrets(folder)
    api = HfApi()  # the token: HF_TOKEN or the saved login, resolved by huggingface_hub itself
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    # delete_patterns: shards and images of an earlier publish that this one no longer has go
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder), commit_message=message,
                             delete_patterns=["*.parquet", "images/*"], ignore_patterns=[MARKER])
    return str(getattr(info, "commit_url", info))


def run(pp: PublishParams, repo_id: str | None, params: dict, root: Path, dry_run_dir: Path | None) -> dict:
    repo_id = repo_id or pp.repo_id
    dry = dry_run_dir is not None or pp.dry_run
    if not repo_id:
        if not dry:
            raise ParamsError("publish: give REPO_ID (owner/name) on the command line or in params publish.repo_id")
        repo_id = "your-name/dasd-dataset"  # a dry run only names it in the card
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ParamsError(f"publish: repo id {repo_id!r} is not owner/name")
    folder = Path(dry_run_dir) if dry_run_dir is not None else root / pp.folder
    report = build(pp, repo_id, params, root, folder)
    report["uploaded"] = None
    if not dry:
        names = ", ".join(report["configs"])
        report["uploaded"] = upload(folder, repo_id, pp.private, f"dasd publish: {names}")
    return report


def main(ctx) -> None:
    pp = ctx.section("publish")
    if ctx.args.private is not None:
        pp.private = ctx.args.private
    r = run(pp, ctx.args.repo_id, ctx.params, ctx.root, Path(ctx.args.dry_run) if ctx.args.dry_run else None)
    print(f"publish {r['repo_id']}: " + ", ".join(f"{k} {v} rows" for k, v in r["configs"].items())
          + f" -> {r['folder']} ({len(r['files'])} files)")
    print(f"uploaded: {r['uploaded']}" if r["uploaded"] else
          "dry run: nothing uploaded (--dry-run, or params publish.dry_run: true)")


def _arguments(parser) -> None:
    parser.add_argument("repo_id", nargs="?", metavar="REPO_ID", help="owner/name (default: params publish.repo_id)")
    parser.add_argument("--private", dest="private", action="store_true", default=None,
                        help="create the repository private (default: params publish.private; an existing "
                             "repository keeps its visibility)")
    parser.add_argument("--public", dest="private", action="store_false", help="create it public")
    parser.add_argument("--dry-run", metavar="DIR", help="build the repository in DIR and upload nothing")


# frozen in dvc.yaml; the card also records every stage's dvc.lock entry and params (read from the files)
STAGE = Stage("publish", main, sections={"publish": PublishParams}, params=("publish",),
              inputs={"export": "data/export", "generations": "data/generations", "student_scores": "data/student_scores",
                      "filter": "data/filter", "dedup": "data/dedup", "select": "data/select", "plots": "plots/select"},
              arguments=_arguments)

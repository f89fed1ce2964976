"""Stage `select`: DAS and the baselines on constructed tables whose right answer is known by hand."""
from __future__ import annotations


import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import select, tables
from engine.params import ParamsError


def setup(tmp_path, candidates, naturalness=None):
    """candidates: (response_id, question_id, [sentence types], [student logprobs], [student ranks]
    [, [p_teacher - p_student per sentence]]); naturalness: response_id -> local naturalness (none: the
    stage was off)."""
    kept = pa.table({"response_id": [c[0] for c in candidates], "question_id": [c[1] for c in candidates]})
    # the student's tokens all in the first sentence: the sentences agree with the scores, as the stage's do
    sent = [dict(dict.fromkeys(tables.SENTENCES.names), response_id=c[0], question_id=c[1], sentence_index=i, type=t,
                 student_tokens=len(c[3]) if i == 0 else 0, student_logprob=sum(c[3]) / len(c[3]) if i == 0 else None,
                 **({"p_teacher": 0.5 + c[5][i] / 2, "p_student": 0.5 - c[5][i] / 2} if len(c) > 5 else {}))
            for c in candidates for i, t in enumerate(c[2])]
    scores = [dict(dict.fromkeys(tables.STUDENT_SCORES.names), response_id=c[0], student_logprobs=c[3],
                   student_ranks=c[4]) for c in candidates]
    tables.write_parquet(kept, tmp_path / "kept.parquet")
    tables.write_parquet(pa.Table.from_pylist(sent, schema=tables.SENTENCES), tmp_path / "s" / "p.parquet")
    tables.write_parquet(pa.Table.from_pylist(scores, schema=tables.STUDENT_SCORES), tmp_path / "sc" / "p.parquet")
    nat = [dict(dict.fromkeys(tables.NATURALNESS.names), response_id=r, local_naturalness=v)
           for r, v in (naturalness or {}).items()]
    tables.write_parquet(pa.Table.from_pylist(nat, schema=tables.NATURALNESS), tmp_path / "n" / "p.parquet")
    return {"kept": tmp_path / "kept.parquet", "sentences": tmp_path / "s" / "*.parquet",
            "student_scores": tmp_path / "sc" / "*.parquet", "naturalness": tmp_path / "n"}


def choose(tmp_path, inputs, **kw):
    select.run(select.SelectParams(**kw), 0.6, inputs, tmp_path / "out", tmp_path / "m.json")
    return pq.read_table(tmp_path / "out" / "selected.parquet").to_pylist()


T, S, H = "teacher", "student", "shared"
CANDIDATES = [
    # q1: b has the most teacher sentences (3); c has the highest proportion (2 of 2)
    ("a", "q1", [T, S, H, H], [-1.0, -1.0], [1, 1]),
    ("b", "q1", [T, T, T, S, S, H], [-2.0, -2.0], [5, 200]),
    ("c", "q1", [T, T], [-0.5, -0.1], [1, 2]),
    # q2: a tie on count (2 each): the smaller response_id wins, whatever the input order
    ("e", "q2", [T, T, S], [-3.0], [1]),
    ("d", "q2", [T, H, T], [-3.0], [1]),
    # q3: a single candidate with no teacher sentence is still chosen
    ("f", "q3", [S, H, "unaligned"], [-0.2], [1]),
]


def test_das_count_ties_and_single_candidates(tmp_path):
    got = choose(tmp_path, setup(tmp_path, CANDIDATES))
    assert [(r["question_id"], r["response_id"], r["score"]) for r in got] == [("q1", "b", 3), ("q2", "d", 2),
                                                                               ("q3", "f", 0)]
    b = got[0]
    assert (b["teacher_sentences"], b["student_sentences"], b["shared_sentences"], b["sentences"]) == (3, 2, 1, 6)
    assert all(r["rank"] == 1 and r["selector"] == "das" and r["temperature"] == 0.6 for r in got)


def test_das_ties_go_to_the_teacher_margin_and_the_report_says_how_it_decided(tmp_path):
    margins = [
        ("a", "q1", [T, S, H, H], [-1.0], [1], [0.3, -0.3, 0, 0]),
        ("b", "q1", [T, T, S], [-1.0], [1], [0.2, 0.2, -0.2]),   # q1: the most teacher sentences, not the longest
        ("c", "q1", [H, H, H, H, H], [-1.0], [1], [0] * 5),
        ("e", "q2", [T, T, S], [-3.0], [1], [0.5, 0.3, -0.2]),  # q2: a tie on count; e's margin is larger
        ("d", "q2", [T, H, T], [-3.0], [1], [0.2, 0.0, 0.2]),
        ("g", "q4", [T, H], [-1.0], [1], [0.4, 0.0]),           # q4: equal count and margin: response_id
        ("h", "q4", [T, H], [-1.0], [1], [0.4, 0.0]),
        ("f", "q3", [S, H], [-0.2], [1], [-0.3, 0]),            # q3: no choice to make
    ]
    inputs = setup(tmp_path, margins)
    got = {r["question_id"]: r["response_id"] for r in choose(tmp_path, inputs)}
    assert got == {"q1": "b", "q2": "e", "q3": "f", "q4": "g"}
    report = __import__("json").loads((tmp_path / "m.json").read_text())
    assert report["ranking"] == "das score, then the mean margin p_teacher - p_student of the teacher sentences, " \
                                "then response_id"
    # 24 sentences: 9 teacher, 4 student, 11 shared
    assert report["sentence_types"] == {"teacher": round(9 / 24, 4), "student": round(4 / 24, 4),
                                        "shared": round(11 / 24, 4), "unaligned": 0.0}
    random = {r["question_id"]: r["response_id"] for r in choose(tmp_path, inputs, selector="random")}
    differs = sum(random[q] != got[q] for q in ("q1", "q2", "q4"))
    assert report["decisions"] == {"questions_with_choice": 3, "tie_on_score": round(2 / 3, 4),
                                   "to_response_id": round(1 / 3, 4), "not_most_sentences": round(1 / 3, 4),
                                   "differs_from_random": round(differs / 3, 4)}


def test_das_proportion_and_top_k(tmp_path):
    inputs = setup(tmp_path, CANDIDATES)
    got = choose(tmp_path, inputs, das_measure="proportion")
    assert got[0]["response_id"] == "c" and got[0]["score"] == 1.0
    got = choose(tmp_path, inputs, top_k=2)
    assert [(r["question_id"], r["response_id"], r["rank"]) for r in got] == [
        ("q1", "b", 1), ("q1", "c", 2), ("q2", "d", 1), ("q2", "e", 2), ("q3", "f", 1)]


def test_baselines(tmp_path):
    inputs = setup(tmp_path, CANDIDATES)
    got = {r["question_id"]: r for r in choose(tmp_path, inputs, selector="global_naturalness")}
    assert got["q1"]["response_id"] == "c" and got["q1"]["score"] == pytest.approx(-0.3)
    got = {r["question_id"]: r for r in choose(tmp_path, inputs, selector="rank_surprisal")}
    # a: (1+1)/2 = 1.0; b: (5+100)/4 = 26.25; c: (1+2)/0.6 = 5.0 -> a has the lowest ratio
    assert got["q1"]["response_id"] == "a" and got["q1"]["score"] == pytest.approx(-1.0)
    # longest, the control for DAS's count: the most sentences (q1: b's 6), then the most student tokens
    got = choose(tmp_path, inputs, selector="longest")
    assert [(r["question_id"], r["response_id"], r["score"]) for r in got] == [("q1", "b", 6), ("q2", "d", 3),
                                                                               ("q3", "f", 3)]
    two = setup(tmp_path / "tokens", [("x", "q", [T, S], [-1.0], [1]), ("y", "q", [S, S], [-1.0] * 3, [1] * 3)])
    assert [r["response_id"] for r in choose(tmp_path / "tokens", two, selector="longest")] == ["y"]
    first = choose(tmp_path, inputs, selector="random", seed=1)
    assert first == choose(tmp_path, inputs, selector="random", seed=1)  # reproducible
    picks = {tuple(r["response_id"] for r in choose(tmp_path, inputs, selector="random", seed=s)) for s in range(8)}
    assert len(picks) > 1  # and the seed matters


def test_params_are_checked():
    with pytest.raises(ParamsError, match="selector"):
        select.SelectParams(selector="shortest")
    with pytest.raises(ParamsError, match="das_measure"):
        select.SelectParams(das_measure="ratio")


def test_probability_histogram_plot(tmp_path):
    inputs = setup(tmp_path, CANDIDATES)
    select.run(select.SelectParams(), 0.6, inputs, tmp_path / "out", tmp_path / "m.json", tmp_path / "plot.csv")
    import pyarrow.csv as pcsv

    rows = {r["p"]: r for r in pcsv.read_csv(tmp_path / "plot.csv").to_pylist()}
    assert len(rows) == 20 and sum(r["random_student"] for r in rows.values()) == pytest.approx(1.0)
    # DAS picks b, d, f: student probabilities exp(-2) = 0.135, exp(-3) = 0.050, exp(-0.2) = 0.819
    assert {p: r["selected_student"] for p, r in rows.items() if r["selected_student"]} == pytest.approx(
        {0.125: 1 / 3, 0.025: 1 / 3, 0.825: 1 / 3})
    assert all(r["selected_teacher"] == 0 for r in rows.values())  # no teacher logprobs in these sentences


def test_local_naturalness_selector_needs_its_stage(tmp_path):
    with pytest.raises(ParamsError, match="naturalness.enabled"):
        choose(tmp_path, setup(tmp_path, CANDIDATES), selector="local_naturalness")
    got = choose(tmp_path, setup(tmp_path, CANDIDATES, {"a": -2.0, "b": -0.5, "c": -1.0, "d": -3.0, "e": -1.0}),
                 selector="local_naturalness")
    # q3's only candidate has no value (no step of its own) and is still chosen: nothing else to pick
    assert [(r["question_id"], r["response_id"]) for r in got] == [("q1", "b"), ("q2", "e"), ("q3", "f")]


def test_a_selector_is_one_registry_entry(tmp_path, monkeypatch):
    """What the README promises: a selector is one entry (name, doc, SQL score) in engine/candidates.py;
    the candidates get its column and select ranks by it when it is the selector."""
    from engine import candidates, sql

    most = candidates.Selector("most_sentences", "the most sentences", "c.sentences::DOUBLE")
    monkeypatch.setattr(candidates, "REGISTRY", candidates.REGISTRY + (most,))
    inputs = setup(tmp_path, CANDIDATES)
    con = sql.connect()
    sql.create_views(con, inputs)
    sql.run_file(con, "select_candidates", candidates.fragments(), das_measure="count", seed=0,
                 selector="most_sentences").create("select_candidates")
    rows = con.sql("SELECT response_id, sentences, most_sentences, score FROM select_candidates").fetchall()
    assert rows and all(s == m == sc for _, s, m, sc in rows)
    assert set(candidates.SELECTORS) <= {c for c in con.sql("SELECT * FROM select_candidates").columns}

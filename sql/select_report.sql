-- select_report: how the selector decided, one row per question that had a choice (two or more candidates).
-- Inputs:  select_candidates (one row per candidate: sentence counts, every selector's score, `score` and
--          `tiebreak`, the chosen selector's), selected (the chosen rows, `rank`).
-- Grain:   one row per question with at least two candidates; engine/select.py turns it into shares.
-- Columns: tie_on_score: two or more candidates share the top score; to_response_id: they share the
--          tiebreak too, so response_id decided; not_most_sentences: the choice (rank 1) has fewer
--          sentences than the question's longest candidate; differs_from_random: it is not what the
--          `random` selector (same seed) would have chosen.
WITH ranked AS (
    SELECT question_id, response_id, sentences,
           count(*) OVER q AS candidates,
           max(sentences) OVER q AS most_sentences,
           rank() OVER (q ORDER BY score DESC NULLS LAST) AS score_rank,
           rank() OVER (q ORDER BY score DESC NULLS LAST, tiebreak DESC NULLS LAST) AS key_rank,
           row_number() OVER (q ORDER BY random DESC NULLS LAST, response_id) AS random_rank
    FROM select_candidates
    WINDOW q AS (PARTITION BY question_id)
)
SELECT r.question_id,
       any_value(r.candidates) AS candidates,
       count(*) FILTER (r.score_rank = 1) > 1 AS tie_on_score,
       count(*) FILTER (r.key_rank = 1) > 1 AS to_response_id,
       bool_or(s.rank = 1 AND r.sentences < r.most_sentences) AS not_most_sentences,
       NOT bool_or(s.rank = 1 AND r.random_rank = 1) AS differs_from_random
FROM ranked r
LEFT JOIN selected s USING (response_id)
WHERE r.candidates > 1
GROUP BY r.question_id
ORDER BY r.question_id

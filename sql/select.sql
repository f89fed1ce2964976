-- select: one row per chosen response, up to top_k per question.
-- Inputs:  select_candidates (one row per kept response with a score column per selector and `score`,
--          the chosen selector's; engine/select.py score_candidates).
-- Grain:   one row per (question_id, rank) with rank <= getvariable('top_k').
-- Rule:    per question, order by the chosen selector's score (getvariable('selector')), highest first;
--          an equal score by the selector's `tiebreak` (engine/candidates.py), then by response_id
--          so the choice never depends on input order.
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY question_id
                                 ORDER BY score DESC NULLS LAST, tiebreak DESC NULLS LAST, response_id) AS rank
    FROM select_candidates
)
SELECT response_id, question_id, getvariable('temperature')::DOUBLE AS temperature,
       getvariable('selector') AS selector, score, rank::INTEGER AS rank,
       teacher_sentences::INTEGER AS teacher_sentences, student_sentences::INTEGER AS student_sentences,
       shared_sentences::INTEGER AS shared_sentences, sentences::INTEGER AS sentences
FROM ranked
WHERE rank <= getvariable('top_k')
ORDER BY question_id, rank

-- select_candidates: one row per response that passed the filter, with every selector's score.
-- Inputs:  kept (response_id, question_id: the pool after filter, and dedup when it runs),
--          sentences (one row per response × sentence with type),
--          student_scores (student_logprobs, student_ranks), naturalness (local_naturalness; may be empty).
-- Grain:   one row per kept response.
-- Every selector's score (the registry in engine/candidates.py: one SQL expression each over the
-- candidate's sentence counts `c`, student ranks `r` and naturalness `n`, spliced in at the scores marker;
-- higher is better for every one, so one ranking rule serves all), each response's probability under
-- both models, exp(mean token logprob), for the histograms, and `score`: the one of
-- getvariable('selector'), what select ranks by and dedup keeps the best of, then `tiebreak`, its second
-- key among equal scores (NULL where the selector has none; the score marker).
WITH counts AS (
    SELECT response_id,
           count(*) FILTER (type = 'teacher') AS teacher_sentences,
           count(*) FILTER (type = 'student') AS student_sentences,
           count(*) FILTER (type = 'shared') AS shared_sentences,
           count(*) AS sentences,
           avg(p_teacher - p_student) FILTER (type = 'teacher') AS teacher_margin,
           sum(student_tokens) AS student_tokens,
           -- every token lies in exactly one sentence: these are the means over all the response's tokens
           sum(teacher_logprob * teacher_tokens) / nullif(sum(teacher_tokens), 0) AS mean_teacher_logprob,
           sum(student_logprob * student_tokens) / nullif(sum(student_tokens), 0) AS mean_student_logprob
    FROM sentences GROUP BY 1
), ranks AS (
    -- every student token's rank: read only when it is the selector (the other selectors never pay
    -- for a second pass over the student's tokens)
    SELECT response_id,
           list_sum(list_transform(student_ranks, lambda r: least(r, 100)))
               / nullif(list_sum(list_transform(student_logprobs, lambda lp: -lp)), 0) AS rank_surprisal_ratio
    FROM student_scores
    WHERE getvariable('selector') = 'rank_surprisal'
), scores AS (
    SELECT k.response_id, k.question_id,
           c.teacher_sentences, c.student_sentences, c.shared_sentences, c.sentences,
           exp(c.mean_teacher_logprob) AS p_teacher, exp(c.mean_student_logprob) AS p_student,
           /*@scores*/
    FROM kept k
    JOIN counts c USING (response_id)
    LEFT JOIN ranks r USING (response_id)
    LEFT JOIN naturalness n USING (response_id)
)
SELECT *, /*@score*/
FROM scores

-- publish_sampling: what the teacher's samples are, read from them (an imported set has no `generate` params).
-- Inputs:  generations.
-- Grain:   one row per temperature × teacher × backend × logprobs mode.
SELECT temperature, teacher_model AS teacher, backend, logprobs_mode,
       count(DISTINCT question_id) AS questions, count(*) AS responses,
       round(count(*) / count(DISTINCT question_id), 2) AS per_question,
       sum(teacher_token_count) AS teacher_tokens,
       count(*) FILTER (finish_reason = 'length') AS hit_max_tokens
FROM generations
GROUP BY ALL
ORDER BY temperature, teacher, backend, logprobs_mode

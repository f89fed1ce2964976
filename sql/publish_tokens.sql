-- publish_tokens: length statistics of one published config's assistant turns, for the dataset card.
-- Inputs:  config (the config's rows: response_id, policy), generations and student_scores (token counts
--          of teacher responses), continuations + truncated (a mixed sample's teacher continuation and
--          student prefix).
-- Grain:   one row per policy (off_policy | mixed): examples, and teacher / student token counts
--          (off_policy: the teacher response in each tokenizer; mixed: the teacher's continuation and the
--          student's prefix).
WITH lengths AS (
    SELECT c.policy,
           coalesce(g.teacher_token_count, k.teacher_token_count) AS teacher_tokens,
           coalesce(s.student_token_count, t.cut_token) AS student_tokens
    FROM config c
    LEFT JOIN generations g USING (response_id)
    LEFT JOIN student_scores s USING (response_id)
    LEFT JOIN continuations k ON k.sample_id = c.response_id
    LEFT JOIN truncated t ON t.rollout_id = k.rollout_id
)
SELECT policy, count(*) AS examples,
       sum(teacher_tokens) AS teacher_tokens, round(avg(teacher_tokens), 1) AS teacher_tokens_mean,
       median(teacher_tokens) AS teacher_tokens_median, max(teacher_tokens) AS teacher_tokens_max,
       sum(student_tokens) AS student_tokens, round(avg(student_tokens), 1) AS student_tokens_mean,
       median(student_tokens) AS student_tokens_median, max(student_tokens) AS student_tokens_max
FROM lengths
GROUP BY policy
ORDER BY policy DESC

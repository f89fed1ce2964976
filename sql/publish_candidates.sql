-- publish_candidates: the Hub config `candidates`, for users who run their own selection.
-- Inputs:  generations (teacher tokens + logprobs), student_scores (student tokens + logprobs),
--          questions (prompt, domain), rejections (filter and dedup verdicts), selected (select@T).
-- Grain:   one row per teacher response at every temperature, whether kept or not: `rejected_by` lists
--          every failed rule as '<stage>:<rule>' (empty: it reached selection), `selected` says whether the
--          pipeline's own selection chose it.
WITH verdicts AS (
    SELECT response_id, list(DISTINCT stage || ':' || rule ORDER BY stage || ':' || rule) AS rejected_by
    FROM rejections WHERE stage IN ('filter', 'dedup')
    GROUP BY response_id
)
SELECT g.response_id, g.question_id, q.domain, g.temperature, g.sample_index,
       list_transform(q.messages, lambda m: {'role': m.role, 'content': m.content}) AS prompt,
       g.text AS response, g.finish_reason,
       g.teacher_model, g.logprobs_mode, g.teacher_token_count,
       g.token_ids AS teacher_token_ids, g.token_logprobs AS teacher_logprobs,
       g.token_starts AS teacher_token_starts, g.token_ends AS teacher_token_ends,
       s.student_model, s.student_token_count,
       s.token_ids AS student_token_ids, s.student_logprobs,
       s.token_starts AS student_token_starts, s.token_ends AS student_token_ends,
       coalesce(v.rejected_by, []::VARCHAR[]) AS rejected_by,
       sel.response_id IS NOT NULL AS selected
FROM generations g
JOIN questions q USING (question_id)
LEFT JOIN student_scores s USING (response_id)
LEFT JOIN verdicts v USING (response_id)
LEFT JOIN (SELECT DISTINCT response_id FROM selected) sel USING (response_id)
ORDER BY g.temperature, g.question_id, g.sample_index, g.response_id

-- publish_rules: every rejection rule of every stage that removes rows, for the dataset card.
-- Inputs:  rejections (filter, dedup, truncate, mixed_filter), generations / rollouts / continuations
--          (which temperature and question each rejected id belongs to), questions (domain).
-- Grain:   one row per stage × temperature × domain × rule: how many rows that rule rejected (a response
--          failing two rules counts under both; the funnel counts responses once).
WITH ids AS (
    SELECT response_id AS id, temperature, question_id FROM generations
    UNION ALL SELECT rollout_id, NULL, question_id FROM rollouts
    UNION ALL SELECT sample_id, NULL, question_id FROM continuations
)
SELECT r.stage, i.temperature, q.domain, r.rule, count(*) AS rejected
FROM rejections r
JOIN ids i ON i.id = r.response_id
JOIN questions q USING (question_id)
GROUP BY ALL
ORDER BY r.stage, i.temperature NULLS FIRST, q.domain, r.rule

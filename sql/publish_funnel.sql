-- publish_funnel: the off-policy pipeline in counts for the dataset card.
-- Inputs:  generations, questions (domain), rejections (filter, dedup), selected.
-- Grain:   one row per temperature × domain: teacher responses in, then what each stage rejected and
--          kept (kept + rejected = in at every stage: dedup's input is what the filter kept).
WITH responses AS (
    SELECT g.response_id, g.temperature, q.domain
    FROM generations g JOIN questions q USING (question_id)
), stage_rejected AS (
    SELECT DISTINCT response_id, stage FROM rejections WHERE stage IN ('filter', 'dedup')
)
SELECT r.temperature, r.domain,
       count(*) AS generated,
       count(f.response_id) AS filter_rejected,
       count(*) - count(f.response_id) AS filter_kept,
       count(d.response_id) AS dedup_rejected,
       count(*) FILTER (f.response_id IS NULL AND d.response_id IS NULL) AS dedup_kept,
       count(s.response_id) AS selected
FROM responses r
LEFT JOIN (SELECT response_id FROM stage_rejected WHERE stage = 'filter') f USING (response_id)
LEFT JOIN (SELECT response_id FROM stage_rejected WHERE stage = 'dedup') d USING (response_id)
LEFT JOIN (SELECT DISTINCT response_id FROM selected) s USING (response_id)
GROUP BY ALL
ORDER BY r.temperature, r.domain

-- filter rejections: one row per (response, failed rule).
-- Inputs:  measures (one row per response: response_id, question_id and one numeric column per rule,
--          computed by engine/filter.py), thresholds (rule, threshold) from params `filter.rules`.
-- Grain:   one row per (response_id, rule) where value > threshold. A response with no row is kept.
-- Params:  getvariable('stage') names the stage in the shared rejections schema.
WITH long AS (
    UNPIVOT (SELECT * EXCLUDE (question_id) FROM measures)
    ON COLUMNS(* EXCLUDE (response_id))
    INTO NAME rule VALUE value
)
SELECT l.response_id, getvariable('stage') AS stage, l.rule, l.value::DOUBLE AS value, t.threshold,
       NULL::VARCHAR AS detail
FROM long l JOIN thresholds t USING (rule)
WHERE l.value > t.threshold
ORDER BY l.response_id, l.rule

-- select_histogram: the response-probability distributions of the paper's Fig. 3a/10, per temperature.
-- Inputs:  select_candidates (p_teacher, p_student and every selector's score per kept response),
--          selected (the chosen responses).
-- Grain:   one row per probability bin (width 0.05 over [0, 1]), with the share of responses in it for the
--          selected set and for what the random selector picks with the same top_k, under each model.
WITH random_pick AS (
    SELECT response_id FROM select_candidates
    QUALIFY row_number() OVER (PARTITION BY question_id ORDER BY random DESC, response_id) <= getvariable('top_k')
), sets AS (
    SELECT 'random' AS set, c.p_teacher, c.p_student FROM select_candidates c SEMI JOIN random_pick USING (response_id)
    UNION ALL
    SELECT 'selected', c.p_teacher, c.p_student FROM select_candidates c SEMI JOIN selected USING (response_id)
), long AS (
    SELECT set, 'teacher' AS model, p_teacher AS p FROM sets
    UNION ALL
    SELECT set, 'student', p_student FROM sets
), bins AS (
    SELECT range AS bin FROM range(20)
), binned AS (
    SELECT set, model, least(floor(p * 20), 19)::BIGINT AS bin, count(*) AS n
    FROM long WHERE p IS NOT NULL GROUP BY 1, 2, 3
), counts AS (
    SELECT *, sum(n) OVER (PARTITION BY set, model) AS total FROM binned
)
SELECT round((b.bin + 0.5) / 20, 3) AS p,
       coalesce(max(n / total) FILTER (set = 'random' AND model = 'teacher'), 0) AS random_teacher,
       coalesce(max(n / total) FILTER (set = 'selected' AND model = 'teacher'), 0) AS selected_teacher,
       coalesce(max(n / total) FILTER (set = 'random' AND model = 'student'), 0) AS random_student,
       coalesce(max(n / total) FILTER (set = 'selected' AND model = 'student'), 0) AS selected_student
FROM bins b LEFT JOIN counts c USING (bin)
GROUP BY b.bin
ORDER BY b.bin

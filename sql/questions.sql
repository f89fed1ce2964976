-- questions: one row per distinct question.
-- Input:  questions_staged — one row per valid input row, in source order (`ordinal`); question_id is
--         the hash of the whitespace-normalised question text, so exact duplicates share it.
-- Output: one row per question_id; the first occurrence (lowest ordinal) wins and `duplicates`
--         counts the input rows it stands for (>= 1). Ordered as the sources were read.
SELECT * EXCLUDE (ordinal, rn)
FROM (
    SELECT *,
           row_number() OVER (PARTITION BY question_id ORDER BY ordinal) AS rn,
           count(*) OVER (PARTITION BY question_id)::INTEGER AS duplicates
    FROM questions_staged
)
WHERE rn = 1
ORDER BY ordinal

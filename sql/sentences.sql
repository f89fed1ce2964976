-- sentences: one row per response × sentence, with both models' token counts and probabilities.
-- Inputs:  sentence_spans (response_id, sentence_index, char_start, char_end; spans tile each text),
--          generations (teacher token_starts, token_logprobs), student_scores (token_starts,
--          student_logprobs). Teacher and student tokenizers differ: both are aligned by characters.
-- Grain:   one row per (response_id, sentence_index).
-- Rule:    a token belongs to the sentence holding its first character (ASOF: last sentence whose
--          char_start <= token start). p = exp(mean token logprob) per model; type by margin
--          getvariable('beta'): teacher | student | shared, or unaligned when a side has no token.
WITH teacher_tokens AS (
    SELECT response_id, unnest(token_starts) AS pos, unnest(token_logprobs) AS lp FROM generations
), student_tokens AS (
    SELECT response_id, unnest(token_starts) AS pos, unnest(student_logprobs) AS lp FROM student_scores
), teacher AS (
    SELECT s.response_id, s.sentence_index, count(*) AS n, avg(t.lp) AS mean_lp
    FROM teacher_tokens t ASOF JOIN sentence_spans s ON t.response_id = s.response_id AND t.pos >= s.char_start
    GROUP BY ALL
), student AS (
    SELECT s.response_id, s.sentence_index, count(*) AS n, avg(t.lp) AS mean_lp
    FROM student_tokens t ASOF JOIN sentence_spans s ON t.response_id = s.response_id AND t.pos >= s.char_start
    GROUP BY ALL
), joined AS (
    SELECT g.question_id, g.temperature, sp.response_id, sp.sentence_index, sp.char_start, sp.char_end,
           coalesce(t.n, 0) AS teacher_tokens, coalesce(s.n, 0) AS student_tokens,
           t.mean_lp AS teacher_logprob, s.mean_lp AS student_logprob,
           exp(t.mean_lp) AS p_teacher, exp(s.mean_lp) AS p_student
    FROM sentence_spans sp
    JOIN (SELECT response_id, question_id, temperature FROM generations) g USING (response_id)
    LEFT JOIN teacher t USING (response_id, sentence_index)
    LEFT JOIN student s USING (response_id, sentence_index)
)
SELECT *,
       CASE WHEN p_teacher IS NULL OR p_student IS NULL THEN 'unaligned'
            WHEN p_teacher - p_student > getvariable('beta') THEN 'teacher'
            WHEN p_student - p_teacher > getvariable('beta') THEN 'student'
            ELSE 'shared' END AS type
FROM joined
ORDER BY response_id, sentence_index

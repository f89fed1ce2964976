-- sentences: one row per response × sentence, with both models' token counts, probabilities and type.
-- Inputs:  sentence_sums (one row per response × sentence: its character span and, per model, the count
--          and logprob sum of the tokens assigned to it; engine/sentences.py aligns the teacher's and the
--          student's tokens by character offset: a token belongs to the sentence holding its first
--          character, so different tokenizers meet on the text).
-- Grain:   one row per (response_id, sentence_index), in sentence_sums' order (the generations', then
--          sentence_index): no sort, the order is already deterministic.
-- Rule:    p = exp(mean token logprob) per model (the geometric mean of token probabilities); type by
--          margin getvariable('beta'): teacher | student | shared, or unaligned when a side has no token.
WITH means AS (
    SELECT question_id, temperature, response_id, sentence_index, char_start, char_end,
           teacher_tokens, student_tokens,
           teacher_logprob_sum / nullif(teacher_tokens, 0) AS teacher_logprob,
           student_logprob_sum / nullif(student_tokens, 0) AS student_logprob
    FROM sentence_sums
), probs AS (
    SELECT *, exp(teacher_logprob) AS p_teacher, exp(student_logprob) AS p_student FROM means
)
SELECT *,
       CASE WHEN p_teacher IS NULL OR p_student IS NULL THEN 'unaligned'
            WHEN p_teacher - p_student > getvariable('beta') THEN 'teacher'
            WHEN p_student - p_teacher > getvariable('beta') THEN 'student'
            ELSE 'shared' END AS type
FROM probs

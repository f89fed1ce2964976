-- export_mixed: the stage-3 SFT set — mixed-policy samples plus off-policy samples for balance.
-- Inputs:  mixed_kept (mixed_filter's kept sample ids), continuations (continue: joined text, prefix_chars,
--          cut_fraction), questions (messages, domain), off_policy (the exported sets of
--          params export.mixed.off_policy_from).
-- Grain:   one row per training example: every kept mixed-policy sample, then up to
--          getvariable('off_policy_samples') off-policy rows drawn by a hash of (seed, response_id).
-- The assistant turn of a mixed sample is the student's prefix followed by the teacher's continuation;
-- its train_detail marks the prefix [0, prefix_chars - 1] untrained and the continuation trained
-- (character offsets, end inclusive: Axolotl's message_field_training_detail), which a trainer applies
-- only with mask_student_prefix: true.
WITH mixed AS (
    SELECT list_append(list_transform(q.messages, lambda m: {'role': m.role, 'content': m.content, 'train_detail': NULL}),
                       {'role': 'assistant', 'content': c.text,
                        'train_detail': [{'begin_offset': 0, 'end_offset': c.prefix_chars - 1, 'train': false},
                                         {'begin_offset': c.prefix_chars, 'end_offset': length(c.text) - 1, 'train': true}]})
               AS messages,
           c.sample_id AS response_id, c.question_id, q.domain, getvariable('temperature')::DOUBLE AS temperature,
           'mixed_policy' AS selector, NULL::DOUBLE AS score, NULL::INTEGER AS teacher_sentences,
           NULL::INTEGER AS sentences, 'mixed' AS policy, c.prefix_chars, c.cut_fraction
    FROM mixed_kept k
    JOIN continuations c ON c.sample_id = k.response_id
    JOIN questions q ON q.question_id = c.question_id
),
off AS (
    SELECT * FROM off_policy
    ORDER BY hash(getvariable('seed'), response_id), response_id
    LIMIT getvariable('off_policy_samples')
)
SELECT * FROM (SELECT * FROM mixed ORDER BY question_id, response_id)
UNION ALL
SELECT * FROM off

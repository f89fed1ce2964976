-- export_stage: one SFT training example per selected response of one temperature.
-- Inputs:  selected (select@T output), generations (text), questions (messages, domain).
-- Grain:   one row per selected response.
-- The conversation is the question's messages (system + user) plus the assistant turn: the response
-- text exactly as generated (<think>…</think> then the answer), which is what the student was scored on.
-- Messages carry a null train_detail (tables.EXPORT_MESSAGES): only mixed-policy samples mark ranges.
SELECT list_append(list_transform(q.messages, lambda m: {'role': m.role, 'content': m.content, 'train_detail': NULL}),
                   {'role': 'assistant', 'content': g.text, 'train_detail': NULL}) AS messages,
       s.response_id, s.question_id, q.domain, s.temperature, s.selector, s.score,
       s.teacher_sentences, s.sentences, 'off_policy' AS policy, 0 AS prefix_chars, NULL::DOUBLE AS cut_fraction
FROM selected s
JOIN (SELECT response_id, text FROM generations) g USING (response_id)
JOIN questions q USING (question_id)
ORDER BY s.question_id, s.rank

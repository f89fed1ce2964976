-- dedup: the survivor of every near-duplicate cluster.
-- Inputs:  dedup_members (response_id, question_id, cluster: a connected component of the verified
--          near-duplicate graph, engine/kernels/minhash.py), select_candidates (`score`: the configured selector's).
-- Grain:   one row per response the filter kept, with its cluster, the cluster's size and its survivor.
-- Rule:    the survivor is the member the selector scores highest (ties: the selector's tiebreak, then
--          the smallest response_id; select's own order), so dedup never throws away the response select
--          would have chosen.
SELECT m.response_id, m.question_id, m.cluster,
       count(*) OVER (PARTITION BY m.cluster) AS cluster_size,
       first_value(m.response_id) OVER (PARTITION BY m.cluster
                                        ORDER BY c.score DESC NULLS LAST, c.tiebreak DESC NULLS LAST,
                                                 m.response_id) AS survivor_id
FROM dedup_members m
JOIN select_candidates c USING (response_id)
ORDER BY m.response_id

-- Per feature, how many encoded documents of side A and of side B have it (pooled activation
-- above a threshold), with the two side sizes: what `saeembed diff --measure presence` counts.
-- param encoder_id: the encoder (id or name); defaults to the store's only encoder
-- param corpora_a: list of corpora forming side A
-- param corpora_b: list of corpora forming side B
-- param threshold: count a feature when its pooled value exceeds this (optional, default 0)
WITH side_a AS (
    SELECT DISTINCT d.doc_id FROM documents d
    SEMI JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $encoder_id
    WHERE list_contains($corpora_a, d.corpus)
),
side_b AS (
    SELECT DISTINCT d.doc_id FROM documents d
    SEMI JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $encoder_id
    WHERE list_contains($corpora_b, d.corpus)
),
counts_a AS (
    SELECT x.feature, count(*) AS n FROM activations x SEMI JOIN side_a s ON s.doc_id = x.doc_id
    WHERE x.encoder_id = $encoder_id AND x.value > coalesce($threshold, 0) GROUP BY x.feature
),
counts_b AS (
    SELECT x.feature, count(*) AS n FROM activations x SEMI JOIN side_b s ON s.doc_id = x.doc_id
    WHERE x.encoder_id = $encoder_id AND x.value > coalesce($threshold, 0) GROUP BY x.feature
)
SELECT
    coalesce(a.feature, b.feature)  AS feature,
    coalesce(a.n, 0)                AS n_a,
    coalesce(b.n, 0)                AS n_b,
    (SELECT count(*) FROM side_a)   AS size_a,
    (SELECT count(*) FROM side_b)   AS size_b
FROM counts_a a FULL OUTER JOIN counts_b b ON a.feature = b.feature
ORDER BY feature;

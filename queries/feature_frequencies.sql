-- How many documents of each corpus have each feature (pooled activation > 0), as a count and a
-- share of the corpus's encoded documents, with the mean and max pooled activation.
-- param encoder_id: the encoder (id or name); defaults to the store's only encoder
-- param corpus: only this corpus (optional)
-- param min_docs: drop features in fewer documents than this (optional, default 1)
-- param limit: at most this many rows (optional, default 100)
WITH encoded AS (
    SELECT d.corpus, d.doc_id
    FROM documents d
    JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $encoder_id
    WHERE $corpus IS NULL OR d.corpus = $corpus
),
sizes AS (SELECT corpus, count(*) AS corpus_docs FROM encoded GROUP BY corpus)
SELECT
    x.corpus,
    a.feature,
    f.label,
    count(*)                            AS n_docs,
    s.corpus_docs,
    count(*) / s.corpus_docs            AS freq,
    avg(a.value)                        AS mean_value,
    max(a.value)                        AS max_value
FROM encoded x
JOIN activations a ON a.doc_id = x.doc_id AND a.encoder_id = $encoder_id
JOIN sizes s ON s.corpus = x.corpus
LEFT JOIN features f ON f.encoder_id = a.encoder_id AND f.feature = a.feature
GROUP BY x.corpus, a.feature, f.label, s.corpus_docs
HAVING count(*) >= coalesce($min_docs, 1)
ORDER BY n_docs DESC, x.corpus, a.feature
LIMIT coalesce($limit, 100);

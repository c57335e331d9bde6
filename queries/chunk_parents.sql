-- Per chunked document (stored by `encode --chunk-tokens N`): its number of chunks, how many of
-- them are encoded, how many of those have a feature active and their share, with the feature's
-- strongest value and the chunk where it peaks. Most active chunks first.
-- param encoder_id: the encoder (id or name); defaults to the store's only encoder
-- param feature: the feature (latent index)
-- param corpus: only this corpus (optional)
-- param limit: at most this many documents (optional, default 100)
SELECT
    d.corpus,
    d.parent_id,
    any_value(d.ext_id)                         AS ext_id,
    min(d.row_idx)                              AS row_idx,
    count(*)                                    AS n_chunks,
    count(e.doc_id)                             AS encoded_chunks,
    count(a.doc_id)                             AS active_chunks,
    count(a.doc_id) / nullif(count(e.doc_id), 0) AS share,
    max(a.value)                                AS max_value,
    arg_max(d.chunk_idx, a.value)               AS peak_chunk
FROM documents d
LEFT JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $encoder_id
LEFT JOIN activations a
    ON a.doc_id = d.doc_id AND a.encoder_id = $encoder_id AND a.feature = $feature
WHERE d.parent_id IS NOT NULL AND ($corpus IS NULL OR d.corpus = $corpus)
GROUP BY d.corpus, d.parent_id
ORDER BY active_chunks DESC, max_value DESC NULLS LAST, d.corpus, row_idx
LIMIT coalesce($limit, 100);

-- The documents where a feature is strongest, with the peak token marked «like this» in context.
-- param encoder_id: the encoder (id or name); defaults to the store's only encoder
-- param feature: the feature (latent index)
-- param corpus: only this corpus (optional)
-- param limit: at most this many documents (optional, default 10)
SELECT
    d.corpus,
    d.doc_id,
    d.ext_id,
    a.value,
    a.n_tokens                                                   AS active_tokens,
    substring(d.text, a.peak_start + 1, a.peak_end - a.peak_start) AS peak_text,
    substring(d.text, greatest(a.peak_start - 59, 1), least(a.peak_start, 60))
        || '«' || substring(d.text, a.peak_start + 1, a.peak_end - a.peak_start) || '»'
        || substring(d.text, a.peak_end + 1, 60)                  AS context
FROM activations a
JOIN documents d ON d.doc_id = a.doc_id
WHERE a.encoder_id = $encoder_id
  AND a.feature = $feature
  AND ($corpus IS NULL OR d.corpus = $corpus)
ORDER BY a.value DESC, d.corpus, d.doc_id
LIMIT coalesce($limit, 10);

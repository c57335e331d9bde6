-- The active features of one document, strongest first, with the token where each one peaks.
-- param encoder_id: the encoder (id or name); defaults to the store's only encoder
-- param doc_id: the document (documents.doc_id)
-- param limit: at most this many features (optional, default 50)
SELECT
    a.feature,
    f.label,
    a.value,
    a.n_tokens                                                   AS active_tokens,
    a.peak_token,
    substring(t.text, a.peak_start + 1, a.peak_end - a.peak_start) AS peak_text
FROM activations a
JOIN (SELECT any_value(text) AS text FROM documents WHERE doc_id = $doc_id) t ON true
LEFT JOIN features f ON f.encoder_id = a.encoder_id AND f.feature = a.feature
WHERE a.encoder_id = $encoder_id AND a.doc_id = $doc_id
ORDER BY a.value DESC, a.feature
LIMIT coalesce($limit, 50);

-- Per corpus and encoder: documents stored and encoded, tokens, truncations, and the mean number
-- of active features per document.
-- param encoder_id: the encoder (id or name); all encoders when omitted (optional)
SELECT
    c.corpus,
    e.encoder_id,
    any_value(n.name)                 AS encoder,
    any_value(c.n_docs)               AS documents,
    count(e.doc_id)                   AS encoded,
    coalesce(sum(e.n_tokens), 0)      AS tokens,
    coalesce(sum(e.truncated::INT), 0) AS truncated,
    avg(e.n_features)                 AS mean_features
FROM (SELECT corpus, count(*) AS n_docs FROM documents GROUP BY corpus) c
LEFT JOIN documents d ON d.corpus = c.corpus
LEFT JOIN encoded_documents e ON e.doc_id = d.doc_id AND ($encoder_id IS NULL OR e.encoder_id = $encoder_id)
LEFT JOIN encoders n ON n.encoder_id = e.encoder_id
GROUP BY c.corpus, e.encoder_id
ORDER BY c.corpus, e.encoder_id;

#!/usr/bin/env bash
# The main job on the embedded default: encode a real corpus sample (Rotten Tomatoes fresh and
# rotten review snippets) with SmolLM2-135M-Instruct and the shipped SAE (and its shipped feature
# labels), then query the store.
# Idempotent: a second run reuses the cached model, data and store.
set -euo pipefail
DB="${SAEEMBED_DEMO_DB:-demo.duckdb}"
N="${SAEEMBED_DEMO_DOCS:-500}"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT

saeembed data get "rotten-tomatoes?category=fresh" -o "$DATA/fresh.jsonl" --format jsonl
saeembed data get "rotten-tomatoes?category=rotten" -o "$DATA/rotten.jsonl" --format jsonl
head -n "$N" "$DATA/fresh.jsonl" > "$DATA/fresh-sample.jsonl"
head -n "$N" "$DATA/rotten.jsonl" > "$DATA/rotten-sample.jsonl"

saeembed encode "$DATA/fresh-sample.jsonl" --db "$DB" --corpus fresh
saeembed encode "$DATA/rotten-sample.jsonl" --db "$DB" --corpus rotten
saeembed info "$DB" --format table

echo
echo "Concepts more frequent in rotten than in fresh reviews (plain SQL over the store):"
CONTRAST="
WITH sizes AS (SELECT d.corpus, count(*) AS n FROM encoded_documents e JOIN documents d USING (doc_id) GROUP BY ALL),
     counts AS (SELECT d.corpus, a.feature, count(*) / any_value(s.n) AS freq
                FROM activations a JOIN documents d USING (doc_id) JOIN sizes s USING (corpus) GROUP BY ALL),
     wide AS (SELECT feature,
                     coalesce(sum(freq) FILTER (WHERE corpus = 'rotten'), 0) AS rotten,
                     coalesce(sum(freq) FILTER (WHERE corpus = 'fresh'), 0) AS fresh
              FROM counts GROUP BY feature)
SELECT w.feature, f.label, rotten, fresh, rotten - fresh AS difference
FROM wide w LEFT JOIN features f ON f.feature = w.feature ORDER BY difference DESC LIMIT 8"
saeembed sql "$DB" "$CONTRAST" --format table
FEATURE=$(saeembed sql "$DB" "$CONTRAST" --format csv | sed -n 2p | cut -d, -f1)
echo
echo "The top one up close (saeembed features show $DB $FEATURE):"
saeembed features show "$DB" "$FEATURE" --top 6

#!/usr/bin/env bash
# The main job on the embedded default: encode a real corpus sample (Rotten Tomatoes fresh and
# rotten review snippets) with SmolLM2-135M-Instruct and the shipped SAE, then query the store.
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
echo "Features active in the most fresh and rotten reviews (saeembed sql $DB feature_frequencies):"
saeembed sql "$DB" feature_frequencies -p limit 12 --format table
FEATURE=$(saeembed sql "$DB" "SELECT feature FROM activations GROUP BY feature ORDER BY count(*) DESC LIMIT 1 OFFSET 5" --format csv | tail -n 1)
echo
echo "Where feature $FEATURE peaks (saeembed sql $DB top_documents -p feature $FEATURE):"
saeembed sql "$DB" top_documents -p feature "$FEATURE" -p limit 5 --format table

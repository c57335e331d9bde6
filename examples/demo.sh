#!/usr/bin/env bash
# The main job on the embedded default: which concepts separate rotten from fresh Rotten Tomatoes
# review snippets? `saeembed diff` encodes both samples with SmolLM2-135M-Instruct and the shipped
# SAE (and its shipped feature labels), then tests every concept. Idempotent: a second run reuses
# the cached model, data and store. Writes the HTML report of the diff (report.html) and says
# what to try next.
set -euo pipefail
DB="${SAEEMBED_DEMO_DB:-demo.duckdb}"
REPORT="${SAEEMBED_DEMO_REPORT:-report.html}"
N="${SAEEMBED_DEMO_DOCS:-500}"
# the two samples are kept beside saeembed's cache, so the store's record of its sources stays true
DATA="${SAEEMBED_HOME:-$HOME/.cache/saeembed}/demo-data"
mkdir -p "$DATA"

saeembed data get "rotten-tomatoes?category=fresh" -o "$DATA/all-fresh.jsonl" --format jsonl
saeembed data get "rotten-tomatoes?category=rotten" -o "$DATA/all-rotten.jsonl" --format jsonl
head -n "$N" "$DATA/all-fresh.jsonl" > "$DATA/fresh.jsonl"
head -n "$N" "$DATA/all-rotten.jsonl" > "$DATA/rotten.jsonl"

echo "Concepts that differ between rotten and fresh reviews (saeembed diff):"
saeembed diff "$DATA/rotten.jsonl" "$DATA/fresh.jsonl" --db "$DB" --top 12 --format table \
    --html "$REPORT"
FEATURE=$(saeembed -q diff rotten fresh --db "$DB" --top 1 --format csv | sed -n 2p | cut -d, -f1)
echo
echo "The top one up close (saeembed features show $DB $FEATURE):"
saeembed features show "$DB" "$FEATURE" --top 5
cat <<NEXT

The whole diff, with examples shaded token by token: $REPORT (open it in a browser).
Next, try:
  saeembed diff rotten fresh --db $DB --by themes            # which kinds of reviews differ
  saeembed search $DB "boring" --top 5                         # documents with a property
  saeembed features pages $DB --out pages --top 30             # the concepts that set these reviews apart
NEXT

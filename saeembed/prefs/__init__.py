"""Preference data: reading pairs (`pairs`, HH-RLHF dialogues in `hh_rlhf`), storing them
(`ingest`), the WIMHF-style report of which concepts annotators reward or punish (`report`, with
`regression`, `sparse`, `annotators`, and the pair SAE of `pair_sae` / `pair_encoder`), and
curation (`curate`). The entry points over a store path are in `saeembed.api.preferences`
(`saeembed.preferences` for short)."""

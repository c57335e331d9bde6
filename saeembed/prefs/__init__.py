"""Preference data: reading pairs (`pairs`; HH-RLHF dialogues are split by
`saeembed.dataset_parsers`), storing them (`ingest`), the WIMHF-style fit of which concepts
annotators reward or punish (`fit`, with
`regression`, `sparse`, `annotators`, and the pair SAE of `pair_sae` / `pair_encoder`), and
curation (`curate`). The entry points over a store path are in `saeembed.api.preferences`
(`saeembed.preferences` for short)."""

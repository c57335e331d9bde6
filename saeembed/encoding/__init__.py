"""Encoding: texts through a reader LLM and an SAE into pooled sparse concept vectors.

- `options`: `EncodingOptions`, the reader, SAE, layer, truncation, batching, device, precision
  and chat wrapping every encoding shares (light: no torch)
- `core`: the encoder: the reader and SAE loaded as one `EncodingStack`, documents batched by
  tokens, pooled per document and written to a store in resumable chunks
- `stack_cache`: each stack loaded once per command (`shared_stacks`)

Nothing is imported here, so the options stay light to import."""

"""Hub models as store artifacts: `dorl models mirror` once (where the Hub, or a local copy, is reachable),
`dorl models fetch` in every pod (into the HF cache, so `from_pretrained("distilgpt2")` works offline)."""

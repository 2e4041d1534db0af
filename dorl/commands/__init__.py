"""The commands that are not pipeline stages: `dorl artifacts` (browse the store), `dorl config` (keys, presets,
resolved values), `dorl models` (mirror and fetch Hub models). Stage commands live with their stages in
`dorl/stages/`."""

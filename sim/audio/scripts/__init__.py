"""The call scripts as data: one TOML file per language (en.toml, zh.toml), read by
`sim.audio.script.load_scripts`. A package only so that the files ship with the wheel."""

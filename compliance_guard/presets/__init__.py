"""Preset rule sets shipped as TOML data (a package so that wheels carry the files)."""

"""Manifest: load (with source positions), map env vars, merge with provenance, validate."""

"""Files generated from the code's own tables: README env tables, JSON Schemas, RunPod template."""

"""Plan: observe facts (read-only), diff desired against them (pure), render, and apply."""

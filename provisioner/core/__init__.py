"""Small shared pieces every layer uses: errors, units, secret redaction, atomic file writes,
the workspace layout, shipped resources, pinned versions, logging."""

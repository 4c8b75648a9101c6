"""Small shared pieces every layer uses: errors, units, secret redaction, atomic file writes,
the workspace layout, shipped resources, pinned versions, PEP 508 requirements. Nothing here
imports another Phoenix package."""

"""Tests of provisioner.sources: the transfer layer and the model sources."""

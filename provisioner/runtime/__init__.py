"""The pod runtime: hardening, GPU facts and flags, supervised services, health API, cleanup.

``phoenix run`` (:mod:`provisioner.runtime.run`) ties these together: system setup → apply →
launch → wait for a signal or a failing service → stop → cleanup → exit code.
"""

"""Action kinds. Each module exposes ``observe`` (read-only facts), ``diff`` (pure) and ``apply``.

See :mod:`provisioner.actions.base` for the shared contract.
"""

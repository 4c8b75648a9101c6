"""Each kind's action half: ``apply`` executes the plan's changes (the only writers).

See :mod:`provisioner.actions.base` for the shared contract and :mod:`provisioner.actions.kinds`
for the table; the facts and the diff of each kind are in :mod:`provisioner.plan`.
"""

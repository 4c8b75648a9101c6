"""Plan: each kind's read-only facts and pure diff (``paths``, ``comfyui``, ``packages``,
``nodes``, ``models``), built into one plan (``build``) and rendered (``render``, ``document``).
Nothing in this package writes; the effects are in :mod:`provisioner.actions`."""

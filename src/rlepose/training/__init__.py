"""Training and evaluation runs (the [train] extra): the Lightning modules (top-down, lifting) and
``train`` / ``evaluate``. Configs are in :mod:`rlepose.config`."""

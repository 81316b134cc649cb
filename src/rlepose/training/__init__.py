"""Training and evaluation runs: configs, the Lightning module, and the run functions."""

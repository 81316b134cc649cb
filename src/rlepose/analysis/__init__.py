"""``rlepose analyze``: what the learned uncertainty looks like (density of x̄ and its fits)."""

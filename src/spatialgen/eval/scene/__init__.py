"""The scene world's own networks, trained on exact labels: the object recogniser (the offline detector of
every evaluation) and the depth / normal estimator, with their training."""

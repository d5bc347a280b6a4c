"""Model artifacts: where the weights come from, what they are, and whether they are safe."""

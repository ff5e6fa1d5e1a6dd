"""Measuring generated art: distances between generated and real images in a named feature space."""

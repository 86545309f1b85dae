"""Evaluation metrics: feature extractors, FID/KID/IS/PRDC maths, confidence intervals and the memorization audit."""

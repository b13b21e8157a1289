"""Specialization: accuracy predictor, efficiency predictors (MACs, latency table), evolution."""

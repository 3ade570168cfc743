"""Anomaly scoring: scorers fitted on normal vectors (Mahalanobis, kNN, LOF), the VAE reconstruction scorer,
and the use cases that fit a model on a collection and score new clips with it."""

"""Clustering: k-means in torch (full-batch and mini-batch), for unsupervised methods (PiCIE)."""

from lesseg.cluster.kmeans import KMeans, MiniBatchKMeans, assign, init_centroids

__all__ = ["KMeans", "MiniBatchKMeans", "assign", "init_centroids"]

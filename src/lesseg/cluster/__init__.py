"""Clustering: k-means in torch (full-batch, mini-batch and streaming), for unsupervised methods (PiCIE)."""

from lesseg.cluster.kmeans import KMeans, MiniBatchKMeans, assign, init_centroids
from lesseg.cluster.streaming import StreamingKMeans, lloyd

__all__ = ["KMeans", "MiniBatchKMeans", "StreamingKMeans", "assign", "init_centroids", "lloyd"]

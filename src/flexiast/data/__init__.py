"""Datasets of both papers, augmentation, samplers and the feature cache."""

from .augment import AugmentConfig
from .cache import FeatureCache
from .dataset import AudioDataset, ScanReport, collate, dataset_stats, scan
from .readers import FORMATS, DataError, Item, Manifest, read_manifest
from .samplers import BalancedSampler, ShardedSampler, ast_balanced_weights, manifest_weights

__all__ = [
    "AudioDataset", "AugmentConfig", "BalancedSampler", "DataError", "FORMATS", "FeatureCache", "Item",
    "Manifest", "ScanReport", "ShardedSampler", "ast_balanced_weights", "collate", "dataset_stats",
    "manifest_weights", "read_manifest", "scan",
]

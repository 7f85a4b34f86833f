"""Datasets of both papers, augmentation, samplers and the feature cache."""

from .augment import AugmentConfig
from .cache import FeatureCache
from .dataset import AudioDataset, Collate, ScanReport, collate, dataset_stats, scan
from .lengths import ClipLengths, clip_frames, clip_samples
from .readers import FORMATS, DataError, Item, Manifest, read_manifest
from .samplers import BalancedSampler, ShardedSampler, ast_balanced_weights, manifest_weights
from .token_batches import TokenBatchSampler

__all__ = [
    "AudioDataset", "AugmentConfig", "BalancedSampler", "ClipLengths", "Collate", "DataError", "FORMATS",
    "FeatureCache", "Item", "Manifest", "ScanReport", "ShardedSampler", "TokenBatchSampler",
    "ast_balanced_weights", "clip_frames", "clip_samples", "collate", "dataset_stats", "manifest_weights",
    "read_manifest", "scan",
]

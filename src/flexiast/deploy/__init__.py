"""Deployment: a trained model at any operating point, on audio of any length.

One job per module:

* :mod:`~flexiast.deploy.files`: finding a run's weights, its stored profile, and the
  features and score function saved with the weights;
* :mod:`~flexiast.deploy.budget`: the operating point to deploy (given, stored, or the most
  accurate profiled row within a GFLOPs or latency budget);
* :mod:`~flexiast.deploy.windows`: audio of any length as windows, batched across clips;
* :mod:`~flexiast.deploy.events`: sound event detection from framewise scores;
* :mod:`~flexiast.deploy.model`: :class:`InferenceModel`, weights with all of the above;
* :mod:`~flexiast.deploy.predict`, :mod:`~flexiast.deploy.embed`: what runs on the windows
  (:class:`PredictOptions`, :class:`EmbedOptions`: every option of one call, one value);
* :mod:`~flexiast.deploy.batch`: many files through loader workers, resumable outputs;
* :mod:`~flexiast.deploy.hear`: the HEAR 2021 API; :mod:`~flexiast.deploy.export`: ONNX,
  Hugging Face, torch.export; :mod:`~flexiast.deploy.profiling`: saved weights profiled on a dataset.

``flexiast.inference`` is this package under its older name.
"""

from ..models.points import OperatingPoint, pooled_compression
from .budget import Choice, PointRequest, choose_point, choose_row
from .events import SED_THRESHOLD, detect_events, stitch_framewise
from .files import MULTILABEL_DATASETS, WEIGHT_NAMES, profile_path, resolve_weights, stored_inference_info, weights_stat
from .model import InferenceModel, load_inference_model, machine_name
from .predict import PredictOptions, format_prediction, prediction_task, top_labels
from .windows import WindowTask, WithCompression, batched_windows, grid_window_starts, window_starts

__all__ = ["InferenceModel", "load_inference_model", "PredictOptions", "PointRequest", "Choice", "OperatingPoint",
           "WindowTask", "WithCompression", "batched_windows", "window_starts", "grid_window_starts", "choose_row",
           "choose_point", "resolve_weights", "profile_path", "stored_inference_info", "weights_stat", "WEIGHT_NAMES",
           "MULTILABEL_DATASETS", "stitch_framewise", "detect_events", "SED_THRESHOLD", "pooled_compression",
           "format_prediction", "prediction_task", "top_labels", "machine_name"]

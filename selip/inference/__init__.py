"""Using a trained model without Lightning: load a checkpoint or an exported folder, then
embed volumes and texts, compare them and classify by prompts (:class:`PretrainedSelip`),
or export the model as a self-contained folder (:func:`export_model`)."""

from selip.inference.export import export_model
from selip.inference.loading import InferenceError, load
from selip.inference.model import PretrainedSelip

__all__ = ["InferenceError", "PretrainedSelip", "export_model", "load"]

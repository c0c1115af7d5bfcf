"""lloco_core: the LLoCO library (models, storage, training, metrics). Imports no Prefect."""

__version__ = "0.1.0"

"""The learned cost model: per-store features of lowered programs and models that rank them."""

from .base import CostModel
from .features import (
    FEATURE_NAMES,
    N_FEATURES,
    get_per_store_features,
    get_per_store_features_from_states,
)
from .random_model import RandomModel
from .xgb import XGBModel

__all__ = ["CostModel", "FEATURE_NAMES", "N_FEATURES", "RandomModel", "XGBModel",
           "get_per_store_features", "get_per_store_features_from_states"]

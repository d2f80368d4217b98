"""LightningDataModules that generate seeded synthetic TensorDatasets."""

from datamodules.base import SyntheticDataModule
from datamodules.classification import FeatureClassificationData
from datamodules.regression import LinearRegressionData

__all__ = ["FeatureClassificationData", "LinearRegressionData", "SyntheticDataModule"]

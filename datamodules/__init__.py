"""LightningDataModules that generate seeded synthetic TensorDatasets."""

from datamodules.base import SyntheticDataModule
from datamodules.classification import FeatureClassificationData
from datamodules.images import StripeImageData
from datamodules.regression import LinearRegressionData, TeacherRegressionData
from datamodules.sequences import RecallSequenceData

__all__ = [
    "FeatureClassificationData",
    "LinearRegressionData",
    "RecallSequenceData",
    "StripeImageData",
    "SyntheticDataModule",
    "TeacherRegressionData",
]

"""LightningDataModules: seeded synthetic data held in memory, split and served as whole batches."""

from datamodules.base import SplitDataModule
from datamodules.classification import FeatureClassificationData
from datamodules.images import StripeImageData
from datamodules.regression import LinearRegressionData, TeacherRegressionData
from datamodules.sequences import RecallSequenceData
from datamodules.synthetic import SyntheticDataModule

__all__ = [
    "FeatureClassificationData",
    "LinearRegressionData",
    "RecallSequenceData",
    "SplitDataModule",
    "StripeImageData",
    "SyntheticDataModule",
    "TeacherRegressionData",
]

"""LightningDataModules: data held in memory (seeded synthetic data, or the user's own CSV and
NumPy files), split and served as whole batches."""

from datamodules.base import SplitDataModule
from datamodules.classification import FeatureClassificationData
from datamodules.csv_data import CsvData
from datamodules.file_data import DataFileError
from datamodules.images import StripeImageData
from datamodules.npz_data import ArrayData
from datamodules.regression import LinearRegressionData, TeacherRegressionData
from datamodules.sequences import RecallSequenceData
from datamodules.synthetic import SyntheticDataModule

__all__ = [
    "ArrayData",
    "CsvData",
    "DataFileError",
    "FeatureClassificationData",
    "LinearRegressionData",
    "RecallSequenceData",
    "SplitDataModule",
    "StripeImageData",
    "SyntheticDataModule",
    "TeacherRegressionData",
]

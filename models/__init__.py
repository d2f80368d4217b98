"""Networks (plain ``nn.Module``) and the LightningModules ("tasks") that train them."""

from models.cnn import CNN
from models.inference import InputError, Predictor, load_predictor
from models.linear import LinearRegression
from models.loading import load_task
from models.mlp import MLP
from models.recurrent import RecurrentNet
from models.scratch import ScratchTwoLayer
from models.tasks import ClassificationTask, RegressionTask, Task

__all__ = [
    "CNN",
    "MLP",
    "ClassificationTask",
    "InputError",
    "LinearRegression",
    "Predictor",
    "RecurrentNet",
    "RegressionTask",
    "ScratchTwoLayer",
    "Task",
    "load_predictor",
    "load_task",
]

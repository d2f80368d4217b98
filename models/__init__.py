"""Networks (plain ``nn.Module``) and the LightningModules ("tasks") that train them."""

from models.cnn import CNN
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
    "LinearRegression",
    "RecurrentNet",
    "RegressionTask",
    "ScratchTwoLayer",
    "Task",
    "load_task",
]

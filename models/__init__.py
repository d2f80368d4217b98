"""Networks (plain ``nn.Module``) and the LightningModules ("tasks") that train them."""

from models.linear import LinearRegression
from models.mlp import MLP
from models.tasks import ClassificationTask, RegressionTask, Task

__all__ = ["MLP", "ClassificationTask", "LinearRegression", "RegressionTask", "Task"]

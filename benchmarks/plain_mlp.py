"""A plain PyTorch training script in the style of source 001, example 2: one trial of (a).

``python benchmarks/plain_mlp.py LR HIDDEN EPOCHS [WEIGHT_DECAY SEED]`` trains the
10 -> HIDDEN -> 2 MLP with Adam on 1000 samples whose labels follow a linear rule of the
features (as mlp_classification's data do), in batches of 32, and prints its accuracy on the
last 200 samples. Only the hyperparameters change between runs, as in a user's shell loop.
"""

import sys

import torch
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


learning_rate, hidden_dim, num_epochs = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
weight_decay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
torch.manual_seed(seed)
X = torch.randn(1000, 10)
y = (X @ torch.randn(10, 2)).argmax(dim=1)
train = DataLoader(TensorDataset(X[:800], y[:800]), batch_size=32, shuffle=True)

model = MLP(10, hidden_dim, 2)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
for _epoch in range(num_epochs):
    for inputs, labels in train:
        loss = criterion(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

with torch.no_grad():
    accuracy = (model(X[800:]).argmax(dim=1) == y[800:]).float().mean().item()
print(f"lr {learning_rate} hidden {hidden_dim}: accuracy {accuracy:.3f}")

"""Train a logistic-regression classifier on data/points.csv; driven by params.yaml.

Writes dvclive-style outputs: dvclive/metrics.json (final values) and
dvclive/plots/metrics/{loss,acc}.tsv (one row per epoch). Pure Python: no numpy needed.
"""

import csv
import json
import math
import os
import random

import yaml

with open("params.yaml") as fh:
    params = yaml.safe_load(fh)
train = params["train"]
lr, epochs, l2, seed = float(train["lr"]), int(train["epochs"]), float(train["l2"]), int(train["seed"])

with open("data/points.csv") as fh:
    rows = [[float(v) for v in row] for row in list(csv.reader(fh))[1:]]
random.Random(seed).shuffle(rows)
split = int(len(rows) * 0.8)
train_rows, test_rows = rows[:split], rows[split:]
n_features = len(rows[0]) - 1
weights = [0.0] * n_features
bias = 0.0


def predict(x):
    z = bias + sum(w * v for w, v in zip(weights, x))
    return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))


def evaluate(data):
    loss = correct = 0.0
    for *x, y in data:
        p = min(max(predict(x), 1e-9), 1 - 1e-9)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += (p >= 0.5) == (y == 1.0)
    return loss / len(data), correct / len(data)


os.makedirs("dvclive/plots/metrics", exist_ok=True)
curves: dict[str, list[tuple[int, float]]] = {"loss": [], "acc": []}
for epoch in range(epochs):
    for *x, y in train_rows:
        error = predict(x) - y
        for i in range(n_features):
            weights[i] -= lr * (error * x[i] + l2 * weights[i])
        bias -= lr * error
    loss, acc = evaluate(test_rows)
    curves["loss"].append((epoch, loss))
    curves["acc"].append((epoch, acc))

for name, points in curves.items():
    with open(f"dvclive/plots/metrics/{name}.tsv", "w") as fh:
        fh.write(f"step\t{name}\n")
        for step, value in points:
            fh.write(f"{step}\t{value:.6f}\n")
loss, acc = evaluate(test_rows)
with open("dvclive/metrics.json", "w") as fh:
    json.dump({"acc": round(acc, 6), "loss": round(loss, 6)}, fh, indent=2)
    fh.write("\n")
print(f"acc={acc:.4f} loss={loss:.4f}")

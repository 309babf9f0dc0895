"""The curves of a training run (nn.train): loss, accuracy and the validation metric per epoch, as a PNG."""


def plot_curves(history, path, metric):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["loss"] for r in history], label="training loss")
    left.set_xlabel("epoch")
    left.set_yscale("log")
    left.legend()
    if any("accuracy" in r for r in history):   # (NaN where a record has none)
        right.plot(epochs, [r.get("accuracy", float("nan")) for r in history], label="training accuracy")
    right.plot(epochs, [r[f"validation_{metric}"] for r in history], label=f"validation {metric}")
    right.set_xlabel("epoch")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

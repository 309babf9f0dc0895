"""`python -m benchmarks.crnn_errors CHECKPOINT [--device D] [--at-least SHARE]`: which test digit images a CRNN
checkpoint's failing strips come from.

The 2000 test strips reuse the split's 359 digit images, each in about 30 strips, so a few hard images decide the
whole-string accuracy (0.97 allows 60 failing strips). For every image in at least SHARE of failing strips
(default 0.15) it prints how many strips show it, how many of those fail, and what two classifiers that never
saw the test images read it as (an RBF SVM and 1-nearest-neighbour on the training digit images, scikit-learn):
an image both misread is hard for any reader, not only for the CRNN.
"""
import argparse

import numpy as np

from nn import data


def failures_by_image(failed, sources):
    """{image: (strips showing it, failing strips showing it)}, each strip counted once an image."""
    counts = {}
    for strip_failed, shown in zip(failed, sources):
        for image in np.unique(shown[shown >= 0]):
            total, failing = counts.get(int(image), (0, 0))
            counts[int(image)] = (total + 1, failing + bool(strip_failed))
    return counts


def independent_readings(test_images):
    """What an RBF SVM and a 1-nearest-neighbour classifier, fit on the training digit images, read each of
    `test_images` (indices into the test split) as: {"svm": array, "1-nn": array}."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    images, labels = data.load_digits_images()
    index = data.split_indices(len(images))
    flat = images.reshape(len(images), -1)
    chosen = flat[index["test"][np.asarray(test_images, np.int64)]]
    readers = {"svm": SVC(C=5.0), "1-nn": KNeighborsClassifier(n_neighbors=1)}
    return {name: reader.fit(flat[index["train"]], labels[index["train"]]).predict(chosen)
            for name, reader in readers.items()}


def main(argv=None):
    from nn.inference import _load_for_inference
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crnn_errors")
    parser.add_argument("checkpoint")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--at-least", type=float, default=0.15, help="the share of its strips an image must fail")
    args = parser.parse_args(argv)
    state, task, model = _load_for_inference(args.checkpoint, args.device)
    if state["model_name"] != "crnn":
        raise SystemExit(f"crnn_errors: expected a crnn checkpoint, got a {state['model_name']} one")
    test = task.load(train=False)["test"]
    decoded = task.decode(model, test.inputs, args.device)
    failed = np.array([list(d) != list(t[:n]) for d, t, n in zip(decoded, test.labels, test.label_lengths)])
    print(f"{args.checkpoint}: {failed.sum()} of {len(failed)} test strips fail "
          f"(whole-string accuracy {1 - failed.mean():.4f})")
    counts = failures_by_image(failed, test.sources)
    hard = sorted((image for image, (total, failing) in counts.items() if failing >= args.at_least * total),
                  key=lambda image: -counts[image][1])
    if not hard:
        return
    _, labels = data.load_digits_images()
    test_labels = labels[data.split_indices(len(labels))["test"]]
    readings = independent_readings(hard)
    print("| test image | label | strips | failing | svm reads | 1-nn reads |")
    print("|---|---|---|---|---|---|")
    for row, image in enumerate(hard):
        total, failing = counts[image]
        print(f"| {image} | {test_labels[image]} | {total} | {failing} ({failing / total:.0%}) | "
              f"{readings['svm'][row]} | {readings['1-nn'][row]} |")
    explained = failed & np.isin(test.sources, hard).any(axis=1)
    print(f"{explained.sum()} of the {failed.sum()} failing strips show one of these images")


if __name__ == "__main__":
    main()

"""The confusion matrix of a detector: ground-truth classes + background (rows) against
predicted classes + background (columns), at an IoU and a score threshold.

Each image's predictions scoring at least the threshold are matched one-to-one to its
ground-truth instances of any class as COCO matches them, only across classes: in decreasing
score order, each prediction takes the unmatched instance it overlaps most, from the IoU
threshold (so an object's most confident prediction says what it was taken for, and its
lower-scoring duplicates are false detections). A matched pair counts in (its ground-truth class, its predicted class); an
unmatched ground-truth instance in (its class, background: missed); an unmatched prediction in
(background, its class: a false detection), unless it covers a crowd region (COCO's
``iscrowd``), which is neither counted as ground truth nor as a false detection. So row ``c``
sums to the number of (non-crowd) ground-truth instances of class ``c``."""
import csv

import numpy as np

from .figures import new_figure, save
from .instances import iou_matrix

BACKGROUND = "background"
ANNOTATE_MAX_CLASSES = 20


def greedy_matches(ious, scores, threshold):
    """One-to-one (prediction, ground truth) pairs: the predictions in decreasing ``scores``
    order, each with the unmatched ground truth of highest IoU >= ``threshold``."""
    free = np.ones(ious.shape[1], bool)
    matches = []
    for p in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(free & (ious[p] >= threshold), ious[p], -1.0)
        if candidates.size and candidates.max() >= 0:
            g = int(candidates.argmax())
            free[g] = False
            matches.append((int(p), g))
    return matches


def add_image(matrix, truth, predicted, score_threshold, iou_threshold):
    """Counts one image into ``matrix`` ((K + 1) x (K + 1), the last row / column background)."""
    background = matrix.shape[0] - 1
    keep = np.flatnonzero(predicted.scores >= score_threshold)
    regions = [predicted.regions[i] for i in keep]
    classes, scores = predicted.classes[keep], predicted.scores[keep]
    crowd = truth.crowd if truth.crowd is not None else np.zeros(len(truth), bool)
    real = np.flatnonzero(~crowd)
    ious = iou_matrix(regions, [truth.regions[g] for g in real])
    matches = greedy_matches(ious, scores, iou_threshold)
    matched_p = {p for p, _ in matches}
    matched_g = {g for _, g in matches}
    for p, g in matches:
        matrix[truth.classes[real[g]], classes[p]] += 1
    for g in range(len(real)):
        if g not in matched_g:
            matrix[truth.classes[real[g]], background] += 1
    crowd_regions = [truth.regions[g] for g in np.flatnonzero(crowd)]
    on_crowd = iou_matrix(regions, crowd_regions, np.ones(len(crowd_regions), bool))
    for p in range(len(regions)):
        if p not in matched_p and not (on_crowd.shape[1] and on_crowd[p].max() >= iou_threshold):
            matrix[background, classes[p]] += 1
    return matrix


def confusion_matrix(images, num_classes, score_threshold, iou_threshold):
    """The count matrix over ``images``: (ground truth, predictions) ``ImageInstances`` pairs."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for truth, predicted in images:
        add_image(matrix, truth, predicted, score_threshold, iou_threshold)
    return matrix


def write_confusion_csv(path, matrix, class_names):
    labels = [*class_names, BACKGROUND]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ground truth \\ predicted", *labels])
        for label, row in zip(labels, matrix):
            writer.writerow([label, *row.tolist()])
    return path


def read_confusion_csv(path):
    """(class names with background, count matrix) of a ``confusion_matrix.csv``."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0][1:], np.array([[int(v) for v in row[1:]] for row in rows[1:]])


def row_normalised(matrix):
    """Each row divided by its sum (the share of a class's instances per predicted class)."""
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape), where=sums > 0)


def plot_confusion(path, matrix, class_names, title):
    labels = [*class_names, BACKGROUND]
    size = 2.5 + 0.45 * len(labels)
    figure = new_figure(size + 1.2, size)
    ax = figure.add_subplot()
    shares = row_normalised(matrix)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the row")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90 if len(labels) > 8 else 45, ha="right")
    ax.set_yticks(ticks, [f"{name} ({count})" for name, count in zip(labels, matrix.sum(1))])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth (instances)")
    ax.set_title(title)
    if len(labels) <= ANNOTATE_MAX_CLASSES + 1:
        for (i, j), share in np.ndenumerate(shares):
            if matrix[i, j]:
                ax.text(j, i, f"{share:.2f}", ha="center", va="center", fontsize="x-small",
                        color="white" if share > 0.5 else "black")
    return save(figure, path)

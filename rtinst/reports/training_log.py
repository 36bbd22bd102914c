"""A run's logged scalars as one table: ``metrics.json`` (Detectron2's ``JSONWriter``: losses,
learning rate, times per logged iteration; box / mask AP per evaluation) -> ``results.csv``."""
import csv
import json
import math
from pathlib import Path

RESULTS_FILE = "results.csv"
ITERATION = "iteration"
TRAINING_ORDER = ("total_loss", "loss_", "lr", "time", "data_time")
# the tasks of the COCO and the video (YouTube-VIS: also "tracking") evaluators' results
EVALUATION_TASKS = ("bbox", "segm", "tracking")


def read_metrics(path):
    """The records of a ``metrics.json`` (one JSON object per line), oldest first; a
    ``ValueError`` naming the file and line for a line that is not one (e.g. cut off by a kill
    is tolerated only on the last line, which is then left out)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # the writer was killed mid-line
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({e})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object")
        records.append(record)
    return records


def is_evaluation_key(key):
    """Evaluation results are flattened as ``task/metric`` (``bbox/AP``, ``segm/AP50``;
    ``dataset/task/metric`` with several test datasets)."""
    return "/" in key


def split_evaluation_key(key):
    """``(dataset, "task/metric")`` of an evaluation key: ``("shapes_val", "segm/AP")`` for
    ``shapes_val/segm/AP``, ``("", "segm/AP")`` for ``segm/AP`` (a single test dataset)."""
    dataset, _, metric = key.rpartition("/")
    dataset, _, task = dataset.rpartition("/")
    return dataset, f"{task}/{metric}"


def named_by_dataset(record, dataset):
    """``record`` with the results of its single dataset's evaluation (``segm/AP``,
    ``tracking/IDF1``) named ``<dataset>/segm/AP``, as Detectron2 names them with several test
    datasets; other keys kept."""
    return {f"{dataset}/{k}" if k.split("/")[0] in EVALUATION_TASKS else k: v
            for k, v in record.items()}


def is_per_class_key(key):
    """Per-class AP (``bbox/AP-circle``): in ``per_class.csv``, not in ``results.csv``."""
    return "/AP-" in key


def results_rows(records, evaluation=None, iteration=None):
    """One row per logged iteration, in order (records of the same iteration merged: an
    evaluation is logged apart from the training scalars), per-class keys left out.
    ``evaluation``: flattened results of an evaluation that ``records`` do not hold (e.g.
    ``--eval-only`` of a run's weights, with the run's records), merged in at ``iteration``
    (its values replacing those logged there), or last when ``iteration`` is None."""
    if evaluation:
        records = [*records, {**evaluation, ITERATION: iteration}]
    merged = {}
    for record in records:
        row = merged.setdefault(record.get(ITERATION), {ITERATION: record.get(ITERATION)})
        row.update({k: v for k, v in record.items() if not is_per_class_key(k)})
    return sorted(merged.values(), key=lambda r: (r[ITERATION] is None, r[ITERATION] or 0))


def _training_rank(key):
    for rank, prefix in enumerate(TRAINING_ORDER):
        if key == prefix or (prefix.endswith("_") and key.startswith(prefix)):
            return rank
    return len(TRAINING_ORDER)


def columns(rows):
    """``iteration``, the losses, learning rate and times, other training scalars, then the
    evaluation results in the order they were logged."""
    keys = list(dict.fromkeys(k for row in rows for k in row if k != ITERATION))
    training = sorted((k for k in keys if not is_evaluation_key(k)),
                      key=lambda k: (_training_rank(k), keys.index(k)))
    return [ITERATION, *training, *(k for k in keys if is_evaluation_key(k))]


def write_results_csv(path, rows):
    """``rows`` as CSV, every value written exactly (``repr`` of the float), blank where a row
    has no value."""
    header = columns(rows)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(k) is None else repr(row[k]) for k in header])
    return path


def read_results_csv(path):
    """The rows of a ``results.csv`` as {column: float} (blank cells left out)."""
    with open(path, newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def series(rows, key):
    """(iterations, values) of ``key`` over the rows that have it and an iteration (NaN left
    out)."""
    points = [(row[ITERATION], row[key]) for row in rows
              if row.get(ITERATION) is not None and isinstance(row.get(key), (int, float))
              and not math.isnan(row[key])]
    return [p[0] for p in points], [p[1] for p in points]


def final_evaluation(rows):
    """The evaluation keys of the last row that has any: {``bbox/AP``: ...}."""
    for row in reversed(rows):
        found = {k: v for k, v in row.items() if is_evaluation_key(k)}
        if found:
            return found
    return {}

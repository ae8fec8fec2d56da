"""How the learner choice does on data it never saw: every candidate refitted and tested, on many data sets.

Usage: python benchmarks/learner_choice.py [--only NAME ...] [--json FILE]

For each data set the training leads are cross-fitted as `leadscore train` does (`select_learner`); then every
candidate, not only the chosen one, is refitted on all training leads, calibrated on its out-of-fold margins and
scored on the held-out test leads. Each row gives every candidate's CV log loss, CV ROC AUC and test ROC AUC, the
learner the shipped rule picks (`training.crossfit.choose`: the lowest CV log loss unless a simpler learner is
within noise of it or ranks the training leads at least as well) and the one the log loss alone picks
(`_lowest_loss`), with their test ROC AUC against the logistic candidate's and the best candidate's.

Data: the data sets of `benchmarks/peers.py` (X Education and Olist from ../shared/data when present, the
leadforge bundles and task files, the demo world at 5k and 20k) and more leadforge files nobody tuned for:
bundles (seed 2 intro 3,000 leads, seed 3 intermediate 2,000, seed 4 advanced 8,000) and task files as shipped
(seed 43 research_instructor intermediate 3,000, seed 44 student_public advanced 5,000). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import datasets, leadforge_bundle_loader, leadforge_task_file_loader  # noqa: E402 - the peers' loaders


def more_datasets(workdir: Path):
    """leadforge bundles through `configs/leadforge.yaml` and task files as shipped, beyond the peers' ones."""
    yield "leadforge seed 2 (intro, 3,000 leads)", leadforge_bundle_loader(workdir, 2, "intro", n_leads=3000)
    yield "leadforge seed 3 (intermediate, 2,000 leads)", leadforge_bundle_loader(workdir, 3, "intermediate",
                                                                                   n_leads=2000)
    yield "leadforge seed 4 (advanced, 8,000 leads)", leadforge_bundle_loader(workdir, 4, "advanced", n_leads=8000)
    yield "leadforge task file, seed 43 (2,100 leads)", leadforge_task_file_loader(
        workdir, 43, "intermediate", "research_instructor", 3000)
    yield "leadforge task file, seed 44 (3,500 leads)", leadforge_task_file_loader(
        workdir, 44, "advanced", "student_public", 5000)


def evaluate(leads, outcomes, events, config) -> dict:
    from sklearn.metrics import roc_auc_score

    from leadscore.models.calibration import make_calibrator
    from leadscore.training.crossfit import _lowest_loss, choose, select_learner
    from leadscore.training.train import prepare_training_data

    started = time.perf_counter()
    prepared = prepare_training_data(leads, outcomes, events, config)
    frame, split = prepared.frame, prepared.split
    if not split.cross_fit_folds:
        return {"skipped": "above model.crossfit_max_rows: no cross-fit"}
    config = prepared.config or config
    selection = select_learner(frame, split.train, config, keep_refit=True)
    y_train = frame.y[split.train]
    test = np.flatnonzero(split.test)
    X_test, y_test = frame.X.iloc[test], frame.y[test]
    rows = {}
    for name, res in selection.results.items():
        model = selection.refit(name)
        margin = model.margin(X_test if name.startswith("lightgbm") or name == "blend"
                              else X_test.to_numpy(dtype="float64"))
        p = make_calibrator(res.calibration).fit(res.oof_margin, y_train).predict(margin)
        rows[name] = {"cv_log_loss": round(res.cv_log_loss, 5), "cv_roc_auc": round(res.cv_roc_auc, 4),
                      "test_roc_auc": round(float(roc_auc_score(y_test, p)), 4)}
    shipped, by_loss = choose(selection.results), _lowest_loss(selection.results)
    best = max(rows, key=lambda n: rows[n]["test_roc_auc"])
    return {
        "split": split.method, "train_rows": int(split.train.sum()), "test_rows": int(len(test)),
        "candidates": rows,
        "shipped_rule": {"learner": shipped, "test_roc_auc": rows[shipped]["test_roc_auc"]},
        "log_loss_only": {"learner": by_loss, "test_roc_auc": rows[by_loss]["test_roc_auc"]},
        "logistic_test_roc_auc": rows["logistic"]["test_roc_auc"],
        "best": {"learner": best, "test_roc_auc": rows[best]["test_roc_auc"]},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="data set names to run (substring match)")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in [*datasets(Path(tmp)), *more_datasets(Path(tmp))]:
            if args.only and not any(s.lower() in name.lower() for s in args.only):
                continue
            loaded = load()
            if isinstance(loaded, str):
                results[name] = {"skipped": loaded}
                continue
            leads, outcomes, events, config, _ = loaded
            results[name] = row = evaluate(leads, outcomes, events, config)
            if "skipped" not in row:
                print(f"{name}: shipped {row['shipped_rule']['learner']} {row['shipped_rule']['test_roc_auc']:.3f}, "
                      f"log loss only {row['log_loss_only']['learner']} {row['log_loss_only']['test_roc_auc']:.3f}, "
                      f"logistic {row['logistic_test_roc_auc']:.3f}, best {row['best']['test_roc_auc']:.3f}",
                      file=sys.stderr, flush=True)
    done = [r for r in results.values() if "skipped" not in r]
    results["summary"] = {
        "data_sets": len(done),
        "shipped_below_logistic_by_more_than_0.01": sum(
            r["shipped_rule"]["test_roc_auc"] < r["logistic_test_roc_auc"] - 0.01 for r in done),
        "log_loss_only_below_logistic_by_more_than_0.01": sum(
            r["log_loss_only"]["test_roc_auc"] < r["logistic_test_roc_auc"] - 0.01 for r in done),
        "shipped_mean_shortfall_from_best": round(float(np.mean(
            [r["best"]["test_roc_auc"] - r["shipped_rule"]["test_roc_auc"] for r in done])), 4) if done else None,
        "log_loss_only_mean_shortfall_from_best": round(float(np.mean(
            [r["best"]["test_roc_auc"] - r["log_loss_only"]["test_roc_auc"] for r in done])), 4) if done else None,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()

"""Split labelled leads by time: train < calibration < test by as_of (random only without dates)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.config import SplitConfig
from leadscore.features.errors import DataError
from leadscore.features.spec import LABEL


@dataclass(frozen=True)
class Split:
    """Boolean masks over the labelled rows, the cut times, and how the split was made."""

    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    method: str
    calibration_start: pd.Timestamp | None = None
    test_start: pd.Timestamp | None = None
    cross_fit_folds: int = 0  # > 0: the calibration slice is merged into training and cross-fitted

    def cross_fitted(self, folds: int) -> Split:
        """The same test slice, with the calibration slice given back to training (K-fold cross-fitting)."""
        return Split(self.train | self.calibration, np.zeros_like(self.calibration), self.test, self.method,
                     None, self.test_start, folds)

    def describe(self) -> dict[str, object]:
        return {
            "method": self.method,
            "cross_fit_folds": self.cross_fit_folds,
            "train_rows": int(self.train.sum()),
            "calibration_rows": int(self.calibration.sum()),
            "test_rows": int(self.test.sum()),
            "calibration_start": None if self.calibration_start is None else self.calibration_start.isoformat(),
            "test_start": None if self.test_start is None else self.test_start.isoformat(),
        }


def time_split(frame: pd.DataFrame, as_of: pd.Series, config: SplitConfig, *, source: str = "leads") -> Split:
    """Cut by as_of quantiles so no calibration or test lead is older than any training lead."""
    t = pd.Series(as_of).reset_index(drop=True)
    if config.test_start is not None:
        try:
            test_start = pd.Timestamp(config.test_start)
        except ValueError as exc:
            raise DataError(f"split.test_start: cannot parse {config.test_start!r} as a date") from exc
        test_start = test_start.tz_localize("UTC") if test_start.tzinfo is None else test_start.tz_convert("UTC")
        before = t[t < test_start]
        share = config.calibration_fraction / (1 - config.test_fraction)
        cal_start = before.quantile(1 - share) if len(before) else test_start
    else:
        cal_start = t.quantile(1 - config.test_fraction - config.calibration_fraction)
        test_start = t.quantile(1 - config.test_fraction)
    train = (t < cal_start).to_numpy()
    cal = ((t >= cal_start) & (t < test_start)).to_numpy()
    test = (t >= test_start).to_numpy()
    y = frame[LABEL].to_numpy()
    for name, mask in (("training", train), ("calibration", cal), ("test", test)):
        if mask.sum() == 0 or np.unique(y[mask]).size < 2:
            raise DataError(
                f"{source}: the {name} slice of the time split has {int(mask.sum())} leads and "
                f"{int(y[mask].sum()) if mask.any() else 0} conversions; both classes are needed in every slice"
            )
    return Split(train, cal, test, "time", pd.Timestamp(cal_start), pd.Timestamp(test_start))


def random_split(y: np.ndarray, config: SplitConfig, seed: int, *, source: str = "leads") -> Split:
    """Stratified random split, for data without dates (said in the run's output)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2)
    if counts.min() < 10:
        raise DataError(f"{source}: only {counts.min()} leads in the smaller class; need at least 10 to split")
    rest, test = train_test_split(idx, test_size=config.test_fraction, stratify=y, random_state=seed)
    cal_share = config.calibration_fraction / (1 - config.test_fraction)
    train, cal = train_test_split(rest, test_size=cal_share, stratify=y[rest], random_state=seed)
    masks = [np.zeros(len(y), dtype=bool) for _ in range(3)]
    for mask, rows in zip(masks, (train, cal, test), strict=True):
        mask[rows] = True
    return Split(masks[0], masks[1], masks[2], "stratified random (no dates)")


def time_order(mask: np.ndarray, as_of: pd.Series, seed: int) -> np.ndarray:
    """Positions of the rows in `mask`, earliest as_of first (ties in row order); without dates (any as_of
    missing), a seeded shuffle stands in for time order. Training, tuning and the backtest all cut by it."""
    idx = np.flatnonzero(mask)
    if as_of.notna().all():
        return idx[np.argsort(as_of.to_numpy()[idx], kind="stable")]
    return np.random.default_rng(seed).permutation(idx)

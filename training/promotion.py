"""Champion / challenger: promote a new model only when it is not worse on the same most-recent leads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger may replace the champion.

    `auc_tolerance`: how much ROC AUC the challenger may lose (0.01 = one point; Dynamics 365 auto-publishes a
    retrain only at >= 95% of the active model's accuracy). `max_ece`: the challenger's calibration error must
    stay at or below this, or below the test window's own ECE noise level when that is larger.
    """

    auc_tolerance: float = 0.01
    max_ece: float = 0.05


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict, every reason for it, and the numbers behind it."""

    promote: bool
    reasons: list[str]
    champion: dict[str, Any]
    challenger: dict[str, Any]
    window: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(champion: dict[str, float], challenger: dict[str, float], policy: PromotionPolicy) -> tuple[bool, list[str]]:
    """Apply the policy to two metric sets computed on the same leads (roc_auc, ece, ece_noise_p95, ...)."""
    reasons: list[str] = []
    ok = True
    gap = challenger["roc_auc"] - champion["roc_auc"]
    if gap < -policy.auc_tolerance:
        ok = False
        reasons.append(f"ROC AUC {challenger['roc_auc']:.4f} is {-gap:.4f} below the champion's "
                       f"{champion['roc_auc']:.4f} (tolerance {policy.auc_tolerance:.4f})")
    else:
        reasons.append(f"ROC AUC {challenger['roc_auc']:.4f} vs champion {champion['roc_auc']:.4f} "
                       f"({gap:+.4f}, tolerance {policy.auc_tolerance:.4f})")
    limit = max(policy.max_ece, challenger.get("ece_noise_p95", 0.0))
    if challenger["ece"] > limit:
        ok = False
        reasons.append(f"calibration error (ECE) {challenger['ece']:.4f} is above the limit {limit:.4f}")
    else:
        reasons.append(f"calibration error (ECE) {challenger['ece']:.4f} within the limit {limit:.4f} "
                       f"(champion {champion['ece']:.4f})")
    return ok, reasons

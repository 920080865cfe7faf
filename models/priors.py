"""Priors for a deployment with little or no history: what ``/detect`` says on the first day.

A streaming detector knows nothing about a deployment it has not watched, and little about one it has
watched for an hour; scoring an ordinary sample against such a state calls it anomalous. Until a
feature has about a day of history its score is blended toward a prior built from first principles:

* **Utilisations** (CPU, memory, DB CPU, DB memory) are fractions of a limit, and what hurts is
  saturation: queueing delay grows like ``1 / (1 - u)`` (one server, M/M/1), so every halving of the
  headroom ``1 - u`` is one sigma: ``sigma = log2(1 / (1 - u))``. At the default threshold of 2.5 a
  utilisation is anomalous from 82 % and critical (1.6 x threshold = 4 sigma) from 94 %; half of the
  limit is one sigma.
* **Counts and sizes** (connections, bytes) have no natural bound, so they are judged against the
  fleet: the deployments this worker already watches. Deployments differ by factors, not by amounts,
  so the comparison is of ``log2(1 + value)``: the fleet's learned normal levels are pooled on that
  scale (median level; the typical within-deployment spread combined with the spread of the levels
  across deployments), and a value scores its excess above the fleet's level in pooled spreads, the
  spread being at least one doubling (a fleet of one, or of twins, cannot say that a new deployment
  at twice its level is unusual). With no fleet they are not scored (nothing says what is normal).
* Utilisations are judged by headroom alone: a new deployment running hotter than its siblings is not
  an incident until it nears its limit.

A live feature with ``n`` points is weighted ``min(1, n / maturity)`` against the prior
(:func:`blend`), ``maturity`` being one day of points: the detector's own daily profile needs a day,
and after it the live state alone answers. Until then its sigma is also capped at what ``n`` points
can support: a tail rarer than one in ``n + 2`` cannot be told from ``n`` points, so the cap is the
Gaussian quantile ``Phi^-1(1 - 1 / (n + 2))`` (2.4 sigma after two hours at 60 s, 3.2 after a day).

The learned level and spread are read from the detector's state (:func:`learned_normal`), the slow
running mean and mean absolute deviation of :class:`models.anomaly.StreamingDetector`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from models.anomaly import DetectorScore, StreamingDetector, _score_from  # noqa: F401  (the examples use it)
from models.features import UTILISATION_FEATURES

#: Smallest headroom the saturation prior resolves (a utilisation of 1 scores log2(1e6) ~ 20 sigma).
_MIN_HEADROOM = 1e-6
#: Smallest pooled spread of a count or size across a fleet, in doublings (see the module docstring).
_MIN_LOG2_SPREAD = 1.0
_GAUSS = statistics.NormalDist()
#: 1 / Phi^-1(3/4): median absolute deviation -> standard deviation for Gaussian data.
_MAD_TO_SD = 1.4826


def _log2p(x: float) -> float:
    """``log2(1 + x)`` of a count or size (never negative; 0 counts as 0)."""
    return math.log2(1.0 + max(0.0, x))


def saturation_sigma(u: float) -> float:
    """Sigma of a utilisation ``u`` in [0, 1]: one per halving of the headroom, ``log2(1 / (1 - u))``.

    Examples
    --------
    >>> saturation_sigma(0.0), saturation_sigma(0.5), saturation_sigma(0.75), saturation_sigma(0.9375)
    (0.0, 1.0, 2.0, 4.0)
    >>> round(saturation_sigma(1.0), 2)
    19.93
    """
    headroom = max(_MIN_HEADROOM, 1.0 - min(1.0, max(0.0, u)))
    return 0.0 - math.log2(headroom) if headroom < 1.0 else 0.0


class LearnedDetector(Protocol):
    """What the priors read of a live detector (Helios' own, or a River model behind its adapter)."""

    @property
    def features(self) -> tuple[str, ...]: ...

    def n_learned(self, feature: str) -> int: ...

    def learned_normal(self, feature: str) -> tuple[float, float] | None: ...

    def score_detail(self, x: Mapping[str, float]) -> DetectorScore: ...


def points(detector: LearnedDetector, feature: str) -> int:
    """Points the detector has learned for ``feature`` (0 if never seen).

    Examples
    --------
    >>> det = StreamingDetector(features=("cpu_utilization",))
    >>> for v in (0.4, 0.5, 0.6):
    ...     det.learn_one({"cpu_utilization": v})
    >>> points(det, "cpu_utilization"), points(det, "db_cpu")
    (3, 0)
    """
    return int(detector.n_learned(feature))


def learned_normal(detector: LearnedDetector, feature: str) -> tuple[float, float] | None:
    """(level, spread) the detector learned for ``feature``: slow mean and slow deviation as a sigma.

    Examples
    --------
    >>> det = StreamingDetector(features=("db_connections",))
    >>> for i in range(2000):
    ...     det.learn_one({"db_connections": 15.0 + (i % 3 - 1)})
    >>> level, spread = learned_normal(det, "db_connections")
    >>> round(level), round(spread, 1)
    (15, 0.8)
    """
    normal: tuple[float, float] | None = detector.learned_normal(feature)
    return normal


@dataclass(frozen=True)
class FleetNormal:
    """A feature's normal level and spread (both of ``log2(1 + value)``) pooled over ``size`` deployments."""

    level: float
    spread: float
    size: int


@dataclass(frozen=True)
class Prior:
    """Scores a point without any history of its deployment (see the module docstring).

    Parameters
    ----------
    fleet
        Pooled normals per feature (:meth:`from_fleet`); empty for a worker that watches nothing.

    Examples
    --------
    >>> prior = Prior()
    >>> prior.score_detail({"cpu_utilization": 0.5, "db_connections": 150}).sigma
    1.0
    >>> round(prior.score_detail({"cpu_utilization": 0.95}).sigma, 2)
    4.32
    """

    fleet: Mapping[str, FleetNormal] = field(default_factory=dict)

    @classmethod
    def from_fleet(cls, detectors: Iterable[LearnedDetector], min_points: int) -> Prior:
        """Pool every feature the detectors have learned for at least ``min_points`` points.

        Examples
        --------
        >>> fleet = []
        >>> for level in (10.0, 15.0, 20.0):
        ...     det = StreamingDetector(features=("db_connections",))
        ...     for i in range(500):
        ...         det.learn_one({"db_connections": level + (i % 2)})
        ...     fleet.append(det)
        >>> normal = Prior.from_fleet(fleet, min_points=100).fleet["db_connections"]
        >>> normal.size, round(2 ** normal.level - 1, 1), normal.spread
        (3, 15.5, 1.0)
        >>> prior = Prior.from_fleet(fleet, min_points=100)
        >>> sigma = prior.feature_sigma
        >>> sigma("db_connections", 15.0), round(sigma("db_connections", 123.0), 2)
        (0.0, 2.91)
        """
        seen: dict[str, list[tuple[float, float]]] = {}
        for det in detectors:
            for f in det.features:
                normal = learned_normal(det, f)
                if normal is not None and points(det, f) >= min_points:
                    seen.setdefault(f, []).append(normal)
        fleet = {}
        for f, normals in seen.items():
            if f in UTILISATION_FEATURES:
                continue
            levels = [_log2p(lv) for lv, _ in normals]
            level = statistics.median(levels)
            # a spread as a share of its level is a spread in log units: divide by ln 2 for doublings
            within = statistics.median(sp / (1.0 + abs(lv)) / math.log(2.0) for lv, sp in normals)
            between = _MAD_TO_SD * statistics.median(abs(lv - level) for lv in levels)
            spread = max(math.hypot(within, between), _MIN_LOG2_SPREAD)
            fleet[f] = FleetNormal(level, spread, len(normals))
        return cls(fleet)

    def feature_sigma(self, feature: str, value: float) -> float:
        """The prior's sigma of one feature's value (0 when nothing says what is normal for it)."""
        if feature in UTILISATION_FEATURES:
            return saturation_sigma(value)
        normal = self.fleet.get(feature)
        if normal is None:
            return 0.0
        return max(0.0, _log2p(value) - normal.level) / normal.spread

    def score_detail(self, x: Mapping[str, float]) -> DetectorScore:
        """Score one point (finite values only; others are skipped like the detector skips them)."""
        return _score_from(
            {f: self.feature_sigma(f, float(v)) for f, v in x.items() if math.isfinite(float(v))}
        )


def credible_sigma(n: int) -> float:
    """The largest sigma ``n`` points can support: ``Phi^-1(1 - 1 / (n + 2))`` (0 for no points).

    Examples
    --------
    >>> credible_sigma(0), round(credible_sigma(120), 2), round(credible_sigma(1440), 2)
    (0.0, 2.4, 3.2)
    """
    return _GAUSS.inv_cdf(1.0 - 1.0 / (n + 2)) if n > 0 else 0.0


def blend(
    detector: LearnedDetector | None, prior: Prior, x: Mapping[str, float], maturity: float
) -> tuple[DetectorScore, float]:
    """Each feature's live sigma (capped at :func:`credible_sigma` while young) weighted
    ``min(1, n / maturity)`` against the prior's; and the prior's largest weight (1 without a
    detector, 0 once every feature has ``maturity`` points).

    Examples
    --------
    >>> det = StreamingDetector(features=("cpu_utilization",))
    >>> score, weight = blend(None, Prior(), {"cpu_utilization": 0.75}, maturity=1440)
    >>> score.sigma, weight
    (2.0, 1.0)
    >>> for i in range(720):
    ...     det.learn_one({"cpu_utilization": 0.74 + 0.01 * (i % 3)})
    >>> live = min(det.score_detail({"cpu_utilization": 0.75}).sigma, credible_sigma(720))
    >>> score, weight = blend(det, Prior(), {"cpu_utilization": 0.75}, maturity=1440)
    >>> weight, score.sigma == 0.5 * live + 0.5 * 2.0
    (0.5, True)
    """
    if maturity <= 0:
        raise ValueError(f"maturity must be > 0, got {maturity!r}")
    per: dict[str, float] = {}
    prior_weight = 0.0
    for f, v in x.items():
        value = float(v)
        if not math.isfinite(value):
            continue
        n = 0 if detector is None or f not in detector.features else points(detector, f)
        live = detector.score_detail({f: value}).sigma if detector is not None and n else 0.0
        w = min(1.0, n / maturity)
        if w < 1.0:
            live = min(live, credible_sigma(n))
        per[f] = w * live + (1.0 - w) * prior.feature_sigma(f, value)
        prior_weight = max(prior_weight, 1.0 - w)
    return _score_from(per), prior_weight

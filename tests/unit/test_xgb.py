"""XGBAnomalyModel: batch prediction, contributions, metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from models.xgb import XGBAnomalyModel, classification_metrics, train


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.1 * rng.normal(size=n) > 1.0).astype(float)
    x[rng.random(n) < 0.1, 2] = np.nan  # missing values are allowed
    return x, y


def test_train_learns_a_simple_rule_and_batches_match_rows() -> None:
    x, y = _data()
    model, metrics = train(x, y, ["a", "b", "c"], rounds=30, seed=1)
    assert metrics["auc"] > 0.95
    batch = model.predict_batch(x[:20])
    one_by_one = np.array([model.predict_batch(x[i : i + 1])[0] for i in range(20)])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-6)
    assert batch.shape == (20,) and np.all((batch >= 0) & (batch <= 1))


def test_seeded_training_is_reproducible() -> None:
    x, y = _data()
    a, _ = train(x, y, ["a", "b", "c"], rounds=10, seed=3)
    b, _ = train(x, y, ["a", "b", "c"], rounds=10, seed=3)
    np.testing.assert_array_equal(a.predict_batch(x), b.predict_batch(x))


def test_contributions_add_up_to_the_log_odds() -> None:
    x, y = _data()
    model, _ = train(x, y, ["a", "b", "c"], rounds=10, seed=0)
    c = model.contributions(x[0])
    p = model.predict_batch(x[:1])[0]
    assert set(c) == {"a", "b", "c", "bias"}
    assert 1 / (1 + np.exp(-sum(c.values()))) == pytest.approx(p, rel=1e-4)


def test_wrong_width_rejected() -> None:
    x, y = _data()
    model, _ = train(x, y, ["a", "b", "c"], rounds=2)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        model.predict_batch(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="feature_names"):
        XGBAnomalyModel(model.booster, ["a", "b"])


def test_metrics_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.2, 0.1])
    m = classification_metrics(y, p)
    # AUC: positive/negative pairs ranked right: (0.9 > all 3) + (0.3 > 0.2, 0.1) = 5 of 6
    assert m["auc"] == pytest.approx(5 / 6)
    # at 0.5: TP = 1 (0.9), FP = 1 (0.6), FN = 1 (0.3)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert np.isnan(classification_metrics(np.zeros(3), np.ones(3))["auc"])

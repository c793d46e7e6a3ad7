import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn.metrics")

from m3bert.tasks import metrics  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_multiclass_metrics_match_scikit_learn(rng):
    targets = rng.integers(0, 5, 200)
    predictions = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 5, 200))
    predictions[predictions == 4] = 3  # a class never predicted
    assert metrics.accuracy(targets, predictions) == pytest.approx(sklearn.accuracy_score(targets, predictions))
    assert metrics.macro_f1(targets, predictions, 5) == pytest.approx(
        sklearn.f1_score(targets, predictions, average="macro")
    )
    np.testing.assert_array_equal(
        metrics.confusion(targets, predictions, 5), sklearn.confusion_matrix(targets, predictions, labels=range(5))
    )


def test_multilabel_metrics_match_scikit_learn(rng):
    targets = (rng.random((300, 6)) < 0.3).astype(int)
    scores = targets * 0.3 + rng.random((300, 6))
    scores[:, 2] = np.round(scores[:, 2], 1)  # ties
    assert metrics.macro(metrics.roc_auc, targets, scores) == pytest.approx(
        sklearn.roc_auc_score(targets, scores, average="macro")
    )
    assert metrics.macro(metrics.average_precision, targets, scores) == pytest.approx(
        sklearn.average_precision_score(targets, scores, average="macro")
    )


def test_undefined_classes_are_skipped():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.5], [0.8, 0.3]])
    assert metrics.macro(metrics.roc_auc, targets, scores) == pytest.approx(1.0)


def test_r2_matches_scikit_learn(rng):
    targets = rng.normal(size=(100, 2))
    predictions = targets + rng.normal(scale=0.5, size=(100, 2))
    np.testing.assert_allclose(
        metrics.r2(targets, predictions), sklearn.r2_score(targets, predictions, multioutput="raw_values")
    )

"""gpu_train.sklearn's estimators under scikit-learn's own estimator checks, in a Pipeline and a
GridSearchCV, and against the package's own train."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import gpu_train
from conftest import FIXTURES
from gpu_train.sklearn import MLPClassifier, MLPRegressor


@pytest.mark.parametrize("estimator", [MLPRegressor(device="cpu"), MLPClassifier(device="cpu")],
                         ids=["MLPRegressor", "MLPClassifier"])
def test_scikit_learns_estimator_checks(estimator):
    """Every check of scikit-learn's suite passes, none expected to fail. The one that cannot
    apply: check_array_api_input, for estimators that take other array libraries' arrays (the
    array API: torch, cupy) and keep them on their device; these take numpy arrays (the tag
    array_api_support is False), and scikit-learn skips it unless SCIPY_ARRAY_API=1."""
    results = check_estimator(estimator, on_fail=None)
    not_passed = {r["check_name"]: r["status"] for r in results if r["status"] != "passed"}
    assert not_passed == {"check_array_api_input": "skipped"}, [
        (r["check_name"], r["exception"]) for r in results if r["status"] != "passed"
    ]
    assert len(results) > 50


def digits():
    x = np.load(FIXTURES / "digits" / "train_x.npy")
    y = np.load(FIXTURES / "digits" / "train_y.npy")
    tx = np.load(FIXTURES / "digits" / "test_x.npy")
    ty = np.load(FIXTURES / "digits" / "test_y.npy")
    return x, y, tx, ty


def test_grid_search_over_alpha_in_a_pipeline_on_the_digits():
    x, y, tx, ty = digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=30,
                                                         random_state=0, device="cpu"))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0, 100.0]}, cv=3)
    grid.fit(x, y)
    scores = grid.cv_results_["mean_test_score"]
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1.0)
    # A penalty of 100 pulls the weights towards zero: alpha changes the fit.
    assert scores[2] < scores[0] - 0.1, scores
    assert grid.score(tx, ty) > 0.9


def test_alpha_shrinks_the_weights_as_scikit_learns_does():
    """alpha means what it means in scikit-learn: at alpha 30 the first layer's mean |weight|
    is within 25% of scikit-learn's own MLPClassifier's on the same data (a decay that dropped
    the division by the batch would be 200 times too strong, one left out would not shrink)."""
    from sklearn.neural_network import MLPClassifier as Reference

    x, y, _, _ = digits()
    x = StandardScaler().fit_transform(x)
    kw = dict(hidden_layer_sizes=(32,), max_iter=30, random_state=0)
    with pytest.warns(Warning):  # scikit-learn's: not converged in 30 iterations
        ref = Reference(alpha=30.0, **kw).fit(x, y)
    ours = MLPClassifier(alpha=30.0, device="cpu", **kw).fit(x, y)
    free = MLPClassifier(alpha=0.0, device="cpu", **kw).fit(x, y)
    size = [np.abs(m.coefs_[0]).mean() for m in (ref, ours, free)]
    assert abs(size[1] / size[0] - 1) < 0.25, size
    assert size[2] > 2 * size[1], size


def test_the_classifier_is_the_package_run_it_describes():
    """The fitted classifier's parameters are those of gpu_train.train with the job its
    arguments map to (string labels, indices by sorted class), bit for bit."""
    x, y, _, _ = digits()
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, batch_size=100, alpha=0.01,
                        learning_rate_init=0.01, random_state=7, device="cpu").fit(x, labels)
    assert list(clf.classes_) == sorted(set(labels))
    idx = np.searchsorted(clf.classes_, labels)
    r = gpu_train.train(x, idx, device="cpu", layers=[64, 16, 10], activation="relu",
                        loss="cross-entropy", bias=True, init_scheme="xavier",
                        optimizer={"kind": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                   "weight_decay": 0.01 / 100},
                        lr=0.01, epochs=5, batch=100, shuffle=True, seed=7, log_every=0)
    for k, v in r.params.items():
        np.testing.assert_array_equal(clf.params_[k], v)
    np.testing.assert_array_equal(np.float32(clf.loss_curve_), r.losses)
    assert clf.n_iter_ == 5
    p = clf.predict_proba(x[:5])
    np.testing.assert_array_equal(p, r.predict(x[:5]))
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict(x), clf.predict(x))


def test_the_regressor_fits_a_linear_map_and_keeps_the_shape_of_y():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5))
    w = rng.standard_normal((5, 2))
    y = x @ w
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=300, learning_rate_init=0.01,
                       random_state=0, device="cpu").fit(x, y)
    assert reg.predict(x).shape == (300, 2)
    assert reg.score(x, y) > 0.95
    one = MLPRegressor(max_iter=5, random_state=0, device="cpu").fit(x, y[:, 0])
    assert one.predict(x).shape == (300,)


def test_bad_arguments_are_refused_at_fit():
    x, y = np.zeros((10, 3)), np.arange(10) % 2
    for kw, needle in [({"solver": "lbfgs"}, "solver"), ({"activation": "softsign"}, "activation"),
                       ({"batch_size": 0}, "batch_size"), ({"hidden_layer_sizes": (0,)}, "hidden"),
                       ({"max_iter": 0}, "max_iter"), ({"alpha": -1.0}, "alpha")]:
        with pytest.raises(ValueError, match=needle):
            MLPClassifier(device="cpu", **kw).fit(x, y)
    with pytest.raises(ValueError, match="one class"):
        MLPClassifier(device="cpu").fit(x, np.zeros(10))

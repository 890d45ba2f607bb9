"""scikit-learn estimators trained by gpu_train: `MLPRegressor` and `MLPClassifier`, with the
constructor arguments of scikit-learn's own MLP estimators where the meaning is the same, plus
`device`. They follow scikit-learn's estimator contract (fit / predict / score, get_params /
set_params, clone, pickle) and work in `Pipeline` and `GridSearchCV`.

    from gpu_train.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, device="gpu").fit(X, y)
    clf.score(X_test, y_test)

How the arguments map onto the job (`gpu_train.train`'s keyword arguments):
    hidden_layer_sizes  the widths between the inputs and the outputs (`layers`)
    activation          relu, tanh, logistic (sigmoid) or identity (none)
    solver              "adam", or "sgd" (momentum with `momentum` and `nesterovs_momentum`; plain
                        SGD where momentum is 0); scikit-learn's "lbfgs" is not offered
    alpha               the L2 penalty, applied as scikit-learn applies it to the gradient of a
                        batch's mean loss: a weight decay of alpha / batch rows (here on the biases
                        too, as PyTorch's weight_decay does)
    batch_size          rows per step; "auto": min(200, rows)
    learning_rate_init  `lr`;  max_iter: `epochs` (every one is run: there is no early stop)
    shuffle             a fresh order of the rows every epoch
    random_state        the seed (None: a fresh one per fit, as scikit-learn does)
    beta_1, beta_2, epsilon  Adam's
    device              "auto", "cpu", "gpu", an index or a name (see gpu_train.devices())
The regressor minimizes the mean squared error ("mse"), the classifier the cross-entropy of a
softmax over the classes (two outputs for two classes); both nets have biases and scikit-learn's
Glorot-uniform initialization ("xavier").
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

import gpu_train

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older: the estimator's own method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPRegressor", "MLPClassifier"]

_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "none"}


class _BaseMLP(BaseEstimator):
    """What the two estimators share: the arguments, the job they make, and the fit."""

    _loss = None

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.001,
        max_iter=200,
        shuffle=True,
        random_state=None,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        device="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.device = device

    def _job(self, rows, inputs, outputs):
        """The keyword arguments of gpu_train.train for this estimator's parameters."""
        hidden = self.hidden_layer_sizes
        if np.isscalar(hidden):
            hidden = [hidden]
        hidden = list(hidden)
        if not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
            raise ValueError(
                f"hidden_layer_sizes must be positive whole numbers, got {self.hidden_layer_sizes!r}"
            )
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation {self.activation!r} is not supported; choose from {sorted(_ACTIVATIONS)}"
            )
        if self.batch_size == "auto":
            batch = min(200, rows)
        elif isinstance(self.batch_size, (int, np.integer)) and self.batch_size > 0:
            batch = min(int(self.batch_size), rows)
        else:
            raise ValueError(f"batch_size must be 'auto' or a positive whole number, got {self.batch_size!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter > 0):
            raise ValueError(f"max_iter must be a positive whole number, got {self.max_iter!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        if self.solver == "adam":
            optimizer = {"kind": "adam", "beta1": self.beta_1, "beta2": self.beta_2,
                         "eps": self.epsilon}
        elif self.solver == "sgd" and self.momentum > 0:
            optimizer = {"kind": "momentum", "momentum": self.momentum,
                         "nesterov": bool(self.nesterovs_momentum)}
        elif self.solver == "sgd":
            optimizer = {"kind": "sgd"}
        else:
            raise ValueError(f"solver {self.solver!r} is not supported; choose 'adam' or 'sgd'")
        if self.alpha > 0:
            optimizer["weight_decay"] = float(self.alpha) / batch
        seed = self.random_state
        if seed is None or isinstance(seed, np.random.RandomState):
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        return dict(
            layers=[inputs, *[int(h) for h in hidden], outputs],
            activation=_ACTIVATIONS[self.activation],
            loss=self._loss,
            bias=True,
            init_scheme="xavier",
            optimizer=optimizer,
            lr=float(self.learning_rate_init),
            epochs=int(self.max_iter),
            batch=batch,
            shuffle=bool(self.shuffle),
            seed=int(seed),
            log_every=0,
        )

    def _fit(self, X, y, outputs):
        job = self._job(X.shape[0], X.shape[1], outputs)
        result = gpu_train.train(X, y, device=self.device, **job)
        if result.diverged_at is not None:
            warnings.warn(
                f"the loss became non-finite at epoch {result.diverged_at}; the parameters are "
                f"not usable (lower learning_rate_init)",
                RuntimeWarning,
                stacklevel=3,
            )
        self.params_ = result.params
        self._config = result.config
        names = list(result.params)
        self.coefs_ = [result.params[n].T.copy() for n in names if n.endswith(".weight")]
        self.intercepts_ = [result.params[n] for n in names if n.endswith(".bias")]
        self.n_layers_ = len(self.coefs_) + 1
        self.n_outputs_ = outputs
        self.loss_curve_ = [float(v) for v in result.losses]
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self.n_iter_ = len(self.loss_curve_)
        self.t_ = self.n_iter_ * int(np.ceil(X.shape[0] / job["batch"]))
        self.device_ = result.device
        return self

    def _outputs(self, X, proba):
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=(np.float32, np.float64))
        # The library computes in float32; scikit-learn's estimators answer in float64.
        out = gpu_train.predict(self._config, self.params_, X, proba=proba)
        return out.astype(np.float64)


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by gpu_train (mean squared error). See the
    module's description for the arguments."""

    _loss = "mse"

    def fit(self, X, y):
        X, y = _validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=(np.float32, np.float64)
        )
        self._y_1d = y.ndim == 1
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        return self._fit(X, np.asarray(y2, dtype=X.dtype), y2.shape[1])

    def predict(self, X):
        out = self._outputs(X, proba=False)
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # before 1.6
        return {"multioutput": True}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by gpu_train (cross-entropy over a softmax of
    one output per class). See the module's description for the arguments."""

    _loss = "cross-entropy"

    def fit(self, X, y):
        X, y = _validate_data(self, X, y, dtype=(np.float32, np.float64))
        check_classification_targets(y)
        self.classes_, indices = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"the targets hold only one class ({self.classes_[0]!r}); a classifier needs at "
                f"least two"
            )
        return self._fit(X, indices.astype(np.int64), len(self.classes_))

    def predict_proba(self, X):
        return self._outputs(X, proba=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        proba = self.predict_proba(X)  # first: an unfitted estimator raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

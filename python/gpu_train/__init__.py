"""gpu-train from Python: train small fully connected networks on any GPU (Vulkan, Metal, DX12,
or the CPU path) from numpy arrays, with the same numbers as the command line.

    import gpu_train
    gpu_train.devices()                     # the adapters, and which "auto" picks
    r = gpu_train.train(epochs=100)         # the default job on the seeded data
    r = gpu_train.train(x, y, layers=[64, 32, 10], loss="cross-entropy",
                        optimizer="adam", lr=1e-3, epochs=50, batch=128, val_split=0.2)
    r.losses, r.params, r.summary, r.accuracy, r.predict(x)
    gpu_train.verify(device="gpu").passed   # every kernel against the CPU reference

The job's fields are the keyword arguments, named as the run summary's `config` is (and the
command line's flags, with underscores). Everything runs in the Rust library (`gpu_train._native`):
this module only turns arguments into the job's JSON and the results into numpy arrays.
"""

import difflib
import itertools
import json

import numpy as np

from . import _native

__version__ = _native.__version__
__all__ = ["devices", "train", "sweep", "predict", "verify", "release_device", "SweepResult", "TrainResult", "VerifyReport"]

# The job's fields as the summary's `config` names them (gpu_train.spec.JobSpec in the library).
JOB_FIELDS = (
    "preset", "layers", "batch", "lr", "epochs", "seed", "log_every", "activation", "loss",
    "init_scheme", "bias", "optimizer", "lr_schedule", "data", "dynamic", "rows", "shuffle",
)
# Flat names for the nested ones, as the command line's flags have them.
OPTIMIZER_FIELDS = ("momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay")
SCHEDULE_FIELDS = ("warmup",)
RUN_ARGUMENTS = ("device", "params", "val_split", "layout", "tune")
# The fields a sweep may vary (`gpu-train sweep`'s list flags); every other is shared, since it
# changes shapes or kinds.
SWEEPABLE = ("lr", "seed", "weight_decay", "momentum", "init_scheme", "beta1", "beta2", "eps",
             "lr_schedule", "warmup")
# Fields whose value is a list without being a sweep.
LIST_VALUED = ("layers", "data", "dynamic")


def devices():
    """The adapters as `gpu-train devices` lists them, then the CPU path: a list of dicts (name,
    device_type, backend, ...), each with `select`, the `device=` value that picks it, and
    `auto`, whether `device="auto"` does."""
    return json.loads(_native.devices())


def _plain(value):
    """A keyword argument's value as JSON takes it (numpy scalars and arrays, tuples)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unknown(name, known):
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"train() got an unexpected keyword argument {name!r}{hint}")


def job_json(job):
    """The job's JSON from keyword arguments: the summary's `config` names, the optimizer's and
    the schedule's fields also flat (`weight_decay=`, `warmup=`), `optimizer` and `lr_schedule`
    also as a plain string (`optimizer="adam"`, `lr_schedule="cosine:50:1e-4"`)."""
    spec = {}
    optimizer = {}
    schedule = {}
    for name, value in job.items():
        value = _plain(value)
        if name in OPTIMIZER_FIELDS:
            optimizer[name] = value
        elif name in SCHEDULE_FIELDS:
            schedule[name] = value
        elif name == "optimizer":
            optimizer.update({"kind": value} if isinstance(value, str) else value)
        elif name == "lr_schedule":
            schedule.update({"schedule": value} if isinstance(value, str) else value)
        elif name == "dynamic" and isinstance(value, int) and not isinstance(value, bool):
            spec[name] = {"max": value}
        elif name in JOB_FIELDS:
            spec[name] = value
        else:
            raise _unknown(name, JOB_FIELDS + OPTIMIZER_FIELDS + SCHEDULE_FIELDS + RUN_ARGUMENTS)
    if optimizer:
        spec["optimizer"] = optimizer
    if schedule:
        spec["lr_schedule"] = schedule
    return json.dumps(spec)


def _array(name, a, allow_int=False):
    """`a` as a numpy array the library reads without another copy: float32 or float64 (any
    order), or for targets int64 class indices; anything else is a ValueError naming `name`."""
    if a is None:
        return None
    try:
        arr = np.asarray(a)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name}: not a rectangular array of numbers ({e})") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: not a rectangular array of numbers (dtype object)")
    if allow_int and arr.dtype.kind in "iub" and arr.dtype.kind != "b":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(
                f"{name}: integer targets of shape {arr.shape} are class indices, [rows] or "
                f"[rows, 1]"
            )
        return arr.astype(np.int64, copy=False)
    if arr.dtype not in (np.float32, np.float64):
        kinds = "float32 or float64" + (", or integer class indices" if allow_int else "")
        raise ValueError(f"{name}: dtype {arr.dtype} is not {kinds}")
    if allow_int and arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: a {arr.ndim}-D array of shape {arr.shape}; expected 2-D [rows, columns]")
    return arr


def _params(params):
    if params is None:
        return None
    if not isinstance(params, dict):
        raise ValueError("params: expected a dict of arrays by name (a result's params)")
    out = []
    for name, a in params.items():
        arr = np.asarray(a)
        if arr.dtype.kind != "f":
            raise ValueError(f"params[{name!r}]: dtype {arr.dtype} is not a float type")
        out.append((str(name), np.ascontiguousarray(arr, dtype=np.float32)))
    return out


class TrainResult:
    """What `train` returns.

    losses     every epoch's training loss (float32, one per epoch run)
    params     the weights and biases in PyTorch's `state_dict` names and layouts (`0.weight`
               [out, in], `0.bias`, `2.weight`, ...): `torch.nn.Sequential(...).load_state_dict`
               takes them (as tensors), and `train(params=...)` starts from them
    summary    the run's summary, as `--summary-json` writes it (device, config, timings, ...)
    accuracy   where the targets are classes: the last accuracy measured, on the held-out rows
               with `val_split`, else on the training rows; None otherwise
    validation the last held-out loss with `val_split`, else None
    diverged_at the epoch whose loss was not finite, or None
    """

    def __init__(self, losses, params, summary):
        self.losses = losses
        self.params = params
        self.summary = summary
        self.config = summary["config"]
        self.device = summary["device"]["name"]
        self.diverged_at = summary.get("diverged_at")
        held = summary.get("validation") or []
        self.validation = held[-1]["loss"] if held else None
        if held and "accuracy" in held[-1]:
            self.accuracy = held[-1]["accuracy"]
        else:
            acc = summary.get("accuracy") or []
            self.accuracy = acc[-1]["accuracy"] if acc else None

    @property
    def final_loss(self):
        return self.summary.get("final_loss")

    def predict(self, x):
        """The net's outputs for the rows of `x` (float32 [rows, outputs]); for a cross-entropy
        net, the probabilities (softmax of the logits), as `gpu-train predict` writes them."""
        return predict(self.config, self.params, x, proba=self.config.get("loss") == "cross-entropy")

    def __repr__(self):
        return (
            f"TrainResult(device={self.device!r}, epochs={len(self.losses)}, "
            f"final_loss={self.final_loss!r}, accuracy={self.accuracy!r})"
        )


def release_device():
    """Close the GPU device kept open since the last GPU run. A run keeps its device (opened,
    its kernels compiled) for the next run with the same device and options, which then starts
    in milliseconds instead of opening it again; this frees it sooner than the process's end."""
    _native.release_device()


def predict(config, params, x, proba=False):
    """The outputs of the net `config` describes (a summary's `config`) with `params` (a result's)
    for the rows of `x`, by the library's forward pass on the CPU (`gpu-train predict`'s);
    `proba`: their softmax, for a cross-entropy net."""
    return _native.predict(json.dumps(config), _params(params), _array("x", x), bool(proba))


def train(x=None, y=None, *, device="auto", params=None, val_split=None, layout="auto",
          tune="auto", **job):
    """Train a net and return a `TrainResult`.

    x, y       the dataset: 2-D float32 or float64 arrays [rows, inputs] and [rows, outputs] (any
               memory order), y also integer class indices [rows] (one-hot over the last width
               of `layers`, or the largest index + 1); none for the seeded data of the job
    device     "auto" (the best adapter, else the CPU path), "cpu", "gpu", an index or a name
               from `devices()`
    params     initial weights and biases, in the names and layouts of a result's `params`
    val_split  hold out this fraction of the rows (drawn from the seed) and score them
    layout     "auto", "texels" or "buffer": where the matrices live on the GPU
    tune       "auto", "always" or "never": tune the GPU's products before training
    **job      the job's fields as the summary's `config` names them: layers, batch, lr, epochs,
               seed, activation, loss, init_scheme, bias, optimizer ("adam", or a dict with
               kind, momentum, beta1, ...), lr_schedule, dynamic, rows, shuffle, preset,
               log_every; momentum, beta1, beta2, eps, weight_decay, nesterov and warmup also flat

    Raises ValueError for bad input (the message names the argument), RuntimeError for a device
    failure, KeyboardInterrupt on Ctrl-C (between chunks of epochs; nothing is returned). The GIL
    is released while training. A run whose loss stops being finite returns, with `diverged_at`.
    """
    spec = job_json(job)
    args = _run_arguments(x, y, job, params, device, layout, tune, val_split)
    losses, tensors, summary = _native.train(spec, *args)
    return TrainResult(losses, dict(tensors), json.loads(summary))


def _run_arguments(x, y, job, params, device, layout, tune, val_split):
    """The arguments `train` and `sweep` hand to the library after the job's JSON, checked."""
    if (x is None) != (y is None):
        raise ValueError("give both x and y (the inputs and the targets), or neither (the seeded data)")
    if x is not None and "data" in job:
        raise ValueError("data: give the dataset either as x and y or as data=, not both")
    if val_split is not None:
        val_split = float(val_split)
        if not 0.0 < val_split < 1.0:
            raise ValueError(f"val_split: {val_split} is not a fraction between 0 and 1")
    xa = _array("x", x)
    ya = _array("y", y, allow_int=True)
    if xa is not None and xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"y has {ya.shape[0]} rows but x has {xa.shape[0]}: one target row per input row"
        )
    return xa, ya, _params(params), str(device), str(layout), str(tune), val_split


class SweepResult:
    """What `sweep` returns: `values` (each variant's varied values, a list of dicts), `results`
    (each variant's `TrainResult`, as `train` with those values would return it, bit for bit),
    `varied` (the names varied, in the order of the product: the last fastest), `batching` (how
    the models shared the device: in the same dispatches on a GPU, one to a thread on the CPU, or
    one after another, and why; `sweep.json`'s `batching`)."""

    def __init__(self, varied, values, results, batching):
        self.varied = varied
        self.values = values
        self.results = results
        self.batching = batching

    def __len__(self):
        return len(self.results)

    def __getitem__(self, k):
        return self.results[k]

    def __iter__(self):
        return iter(self.results)

    def best(self):
        """The index of the variant with the lowest final loss among those that did not
        diverge (None if every one diverged)."""
        done = [(r.final_loss, k) for k, r in enumerate(self.results)
                if r.diverged_at is None and r.final_loss is not None]
        return min(done)[1] if done else None

    def __repr__(self):
        lines = [f"SweepResult({len(self)} variants varying {', '.join(self.varied)}; "
                 f"{self.batching})"]
        for v, r in zip(self.values, self.results):
            end = f"diverged at {r.diverged_at}" if r.diverged_at is not None else f"{r.final_loss:.6e}"
            lines.append(f"  {v}: {end}")
        return "\n".join(lines)


def sweep(x=None, y=None, *, device="auto", params=None, val_split=None, layout="auto",
          tune="auto", max_variants=4096, **job):
    """Train every combination of the lists given to the sweepable fields (lr, seed,
    weight_decay, momentum, init_scheme, beta1, beta2, eps, lr_schedule, warmup) as its own
    model, all together (`gpu-train sweep`: on a GPU one submission per chunk for every model),
    and return a `SweepResult`. Each variant's losses and parameters are bit for bit those of
    `train` with its values; a variant that diverges stops alone. The other arguments are
    `train`'s, shared by every variant.

        s = gpu_train.sweep(lr=[1e-6, 3e-6], seed=[0, 1, 2], epochs=100)
        s.values[s.best()], s[s.best()].losses
    """
    lists = {}
    for name, value in job.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if name in SWEEPABLE and isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{name}: an empty list; give at least one value")
            plain = [json.dumps(_plain(v), sort_keys=True) for v in value]
            dup = next((v for i, v in enumerate(plain) if v in plain[:i]), None)
            if dup is not None:
                raise ValueError(f"{name}: {dup} is listed twice")
            lists[name] = list(value)
        elif name not in LIST_VALUED and isinstance(value, (list, tuple)):
            raise ValueError(
                f"{name} cannot vary in a sweep: the variants share every shape and kind "
                f"(the fields that may vary: {', '.join(SWEEPABLE)})"
            )
    count = int(np.prod([len(v) for v in lists.values()])) if lists else 1
    if count > max_variants:
        sizes = " x ".join(f"{k} {len(v)}" for k, v in lists.items())
        raise ValueError(
            f"the lists make {count} variants ({sizes}), more than the cap of {max_variants} "
            f"(max_variants)"
        )
    values = [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]
    specs = [job_json({**job, **v}) for v in values]
    out, batching = _native.sweep(
        specs, *_run_arguments(x, y, job, params, device, layout, tune, val_split))
    results = [TrainResult(losses, dict(t), json.loads(s)) for losses, t, s in out]
    return SweepResult(list(lists), values, results, batching)


class VerifyReport:
    """What `verify` returns: `checks` (a list of dicts: kernel, variant, layout, shape, ratio,
    bound, passed, note), `devices`, `passed` (every check passed), `failed` (those that did
    not), and the whole report as `gpu-train verify --json` writes it (`report`)."""

    def __init__(self, report):
        self.report = report
        self.devices = report["devices"]
        self.checks = report["checks"]
        self.failed = [c for c in self.checks if not c["passed"]]
        self.passed = bool(self.checks) and not self.failed

    def __bool__(self):
        return self.passed

    def __repr__(self):
        names = ", ".join(d["name"] for d in self.devices)
        return (
            f"VerifyReport({names}: {len(self.checks) - len(self.failed)} of "
            f"{len(self.checks)} checks passed)"
        )


def verify(device="gpu", quick=True, layout="auto"):
    """Check every kernel, variant and layout against the CPU reference on awkward shapes, then
    short training runs, as `gpu-train verify` does (`quick`: its `--quick` set, under a minute
    on a software adapter). For a parity test in a user's own pytest:

        assert gpu_train.verify(device="gpu").passed
    """
    return VerifyReport(json.loads(_native.verify(str(device), bool(quick), str(layout))))

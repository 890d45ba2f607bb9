"""gpu_train.train against independent references: the seed's numpy program, the command line's
bits, safetensors, and held-out scores on the digits."""

import json
import signal
import threading
import time
import _thread

import numpy as np
import pytest

import gpu_train
from conftest import FIXTURES, trajectory_tol


def seed_program(x, y, w1, w2, epochs, dtype, lr=1e-6):
    """The seed's numpy program (two layers, ReLU, sum of squared errors, SGD) in `dtype` from
    the same starting arrays (the peers' seed_numpy.py, `--dtype`): the loss of every epoch,
    taken before that epoch's update, and the final weights."""
    x, y, w1, w2 = (a.astype(dtype) for a in (x, y, w1, w2))
    lr = dtype(lr)
    losses = []
    for _ in range(epochs):
        h = x.dot(w1)
        h_relu = np.maximum(h, 0)
        y_pred = h_relu.dot(w2)
        losses.append(np.square(y_pred - y).sum())
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T.dot(grad_y_pred)
        grad_h = grad_y_pred.dot(w2.T)
        grad_h[h < 0] = 0
        grad_w1 = x.T.dot(grad_h)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
    return np.array(losses, dtype=np.float64), w1, w2


def default_arrays(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 1000), dtype=np.float32)
    y = rng.standard_normal((64, 10), dtype=np.float32)
    w1 = rng.standard_normal((1000, 100), dtype=np.float32)
    w2 = rng.standard_normal((100, 10), dtype=np.float32)
    return x, y, w1, w2


def within_trajectory(got, want, what):
    ratio = np.abs(got.astype(np.float64) - want) / trajectory_tol(want)
    i = ratio.argmax()
    assert ratio[i] <= 1, f"{what}, epoch {i}: {got[i]} vs {want[i]} ({ratio[i]:.2f} of the tolerance)"


def test_the_seed_numpy_program_from_the_same_arrays(device):
    """The default job's 500 epochs from numpy's arrays: every epoch's loss within the trajectory
    tolerance of the numpy program's in float32, and of its float64 run for as long as the loss
    stays above float32's floor (epoch 300, loss ~0.07; past 340 float32 levels off at ~9e-5
    where float64 goes on to ~9e-6); the final weights close to the float32 run's. A wrong
    learning rate, a dropped factor of 2, the loss taken after the update, or params read
    untransposed would each be off by far more."""
    x, y, w1, w2 = default_arrays()
    epochs = 500
    r = gpu_train.train(x, y, params={"0.weight": w1.T, "2.weight": w2.T}, device=device,
                        epochs=epochs, tune="never")
    assert r.losses.dtype == np.float32 and r.losses.shape == (epochs,)
    want32, w1_want, w2_want = seed_program(x, y, w1, w2, epochs, np.float32)
    want64, _, _ = seed_program(x, y, w1, w2, 300, np.float64)
    within_trajectory(r.losses, want32, "numpy float32")
    within_trajectory(r.losses[:300], want64, "numpy float64")
    # The loss fell by eleven orders of magnitude, so the checks above saw a real trajectory.
    assert want32[-1] < want32[0] * 1e-9
    for name, w in (("0.weight", w1_want), ("2.weight", w2_want)):
        got = r.params[name].T
        assert np.abs(got - w).max() <= 1e-4 * np.abs(w).max(), name


def test_the_arrays_are_read_in_any_order_and_width():
    """float64 and Fortran-ordered arrays give the bits of the float32 C-ordered ones (a reader
    that took the memory order for the logical one would transpose x)."""
    x, y, w1, w2 = default_arrays(1)
    params = {"0.weight": w1.T, "2.weight": w2.T}
    base = gpu_train.train(x, y, params=params, device="cpu", epochs=5)
    for xx, yy in ((np.asfortranarray(x), np.asfortranarray(y)),
                   (x.astype(np.float64), y.astype(np.float64)),
                   (x[:, ::-1][:, ::-1], y)):
        r = gpu_train.train(xx, yy, params=params, device="cpu", epochs=5)
        np.testing.assert_array_equal(r.losses, base.losses)


def test_the_command_line_and_the_package_give_the_same_bits(cli, device, tmp_path):
    """The default job (80 epochs) through the binary and through the package on the same
    device: every epoch's loss and the final tensors bit for bit, the checkpoint's tensors read
    with safetensors.numpy under the same names. Then the CLI's own initial arrays (--save-init)
    handed to the package as numpy arrays: the same bits again."""
    from safetensors.numpy import load_file

    epochs = 80
    cli("--device", device, "--epochs", epochs, "--tune", "never", "--quiet",
        "--summary-json", tmp_path / "s.json", "--save", tmp_path / "m.safetensors",
        "--save-init", tmp_path / "init")
    s = json.loads((tmp_path / "s.json").read_text())
    want = np.array(s["losses"], dtype=np.float32)
    assert len(want) == epochs

    r = gpu_train.train(device=device, epochs=epochs, tune="never")
    np.testing.assert_array_equal(r.losses, want)
    saved = load_file(tmp_path / "m.safetensors")
    assert sorted(saved) == sorted(r.params) == ["0.weight", "2.weight"]
    for name, t in saved.items():
        assert r.params[name].shape == t.shape
        np.testing.assert_array_equal(r.params[name], t)
    assert r.summary["config"] == s["config"]
    assert r.summary["device"]["name"] == s["device"]["name"]

    init = tmp_path / "init"
    x, y = np.load(init / "x.npy"), np.load(init / "y.npy")
    w1, w2 = np.load(init / "w1.npy"), np.load(init / "w2.npy")
    a = gpu_train.train(x, y, params={"0.weight": w1.T, "2.weight": w2.T}, device=device,
                        epochs=epochs, batch=64, tune="never")
    np.testing.assert_array_equal(a.losses, want)
    for name in saved:
        np.testing.assert_array_equal(a.params[name], saved[name])


def test_params_round_trip_through_safetensors(tmp_path):
    """A result's params saved with safetensors.numpy and read back start a run where the first
    one ended: the second run's first loss is the first run's next one (a layout or name mixed up
    on the way would start elsewhere)."""
    from safetensors.numpy import load_file, save_file

    r1 = gpu_train.train(device="cpu", epochs=6, lr=1e-6)
    save_file(r1.params, str(tmp_path / "p.safetensors"))
    back = load_file(str(tmp_path / "p.safetensors"))
    for k, v in r1.params.items():
        np.testing.assert_array_equal(back[k], v)
    whole = gpu_train.train(device="cpu", epochs=7, lr=1e-6)
    # From epoch 6's parameters on the same (seeded) data.
    cont = gpu_train.train(device="cpu", epochs=1, lr=1e-6, params=back)
    assert cont.losses[0] == whole.losses[6]


def test_class_targets_and_held_out_accuracy_match_the_command_line(cli, tmp_path):
    """The digits as integer class indices: the package's held-out accuracy and loss equal the
    command line's on the same files and split, and the accuracy is a real classifier's."""
    x = np.load(FIXTURES / "digits" / "train_x.npy")
    y = np.load(FIXTURES / "digits" / "train_y.npy")
    job = dict(preset="digits", epochs=30, batch=64, lr=0.05, seed=3)
    r = gpu_train.train(x, y, device="cpu", val_split=0.2, **job)
    cli("--device", "cpu", "--preset", "digits", "--epochs", 30, "--batch", 64, "--lr", 0.05,
        "--seed", 3, "--x", FIXTURES / "digits" / "train_x.npy",
        "--y", FIXTURES / "digits" / "train_y.npy", "--val-split", 0.2, "--quiet",
        "--summary-json", tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert r.accuracy == s["validation"][-1]["accuracy"]
    assert r.validation == s["validation"][-1]["loss"]
    np.testing.assert_array_equal(r.losses, np.array(s["losses"], dtype=np.float32))
    assert r.accuracy > 0.9
    # predict: probabilities whose argmax is the accuracy the library measured on the held-out
    # rows of the same split (recomputed here on the test files instead, independently).
    tx = np.load(FIXTURES / "digits" / "test_x.npy")
    ty = np.load(FIXTURES / "digits" / "test_y.npy")
    p = r.predict(tx)
    assert p.shape == (len(tx), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    assert (p.argmax(axis=1) == ty).mean() > 0.9


def test_a_kept_device_gives_the_bits_of_a_fresh_one():
    """The GPU device a run keeps open serves the next run with the same options: its losses
    and tensors are those of a run on a freshly opened device; another layout opens afresh."""
    from conftest import gpu_adapter

    adapter = gpu_adapter()
    if adapter is None:
        pytest.skip("no GPU adapter")
    job = dict(device=adapter, epochs=20, bias=True, optimizer="adam", lr=1e-3, tune="never")
    gpu_train.release_device()
    assert gpu_train._native.kept_device() is None
    fresh = gpu_train.train(**job)
    name = gpu_train._native.kept_device()
    assert name == fresh.device
    again = gpu_train.train(**job)
    np.testing.assert_array_equal(again.losses, fresh.losses)
    for k, v in fresh.params.items():
        np.testing.assert_array_equal(again.params[k], v)
    other = gpu_train.train(**job, layout="buffer")
    assert other.summary["device"]["layout"] == "buffer"
    np.testing.assert_allclose(other.losses, fresh.losses, rtol=1e-4)
    gpu_train.release_device()
    assert gpu_train._native.kept_device() is None


def test_runs_in_two_threads_at_once_give_their_own_bits(device):
    """Two Python threads training at once (the GIL released; on a GPU both on the kept device)
    give the bits each gives alone: no state shared between runs but the device."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [dict(device=device, epochs=25, seed=s, bias=True, optimizer="momentum", lr=1e-6,
                 tune="never") for s in (1, 2, 3, 4)]
    alone = [gpu_train.train(**j) for j in jobs]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda j: gpu_train.train(**j), jobs))
    for a, t in zip(alone, together):
        np.testing.assert_array_equal(t.losses, a.losses)
        for k in a.params:
            np.testing.assert_array_equal(t.params[k], a.params[k])


def test_devices_lists_the_cpu_path_and_one_auto_choice():
    ds = gpu_train.devices()
    assert ds[-1]["select"] == "cpu"
    assert sum(d["auto"] for d in ds) == 1
    for d in ds:
        assert {"name", "device_type", "backend", "select"} <= set(d)


def test_verify_passes_on_the_gpu():
    from conftest import gpu_adapter

    adapter = gpu_adapter()
    if adapter is None:
        pytest.skip("no GPU adapter")
    report = gpu_train.verify(device=adapter, quick=True)
    assert report.passed, report.failed[:3]
    assert len(report.checks) > 100
    assert {"kernel", "layout", "shape", "ratio", "passed"} <= set(report.checks[0])


def test_the_gil_is_released_while_training():
    """Python code runs in another thread while a run trains: the thread's ticks fall inside the
    middle of the run, not only in the switch intervals before and after it (a run that held the
    GIL throughout would leave that middle empty)."""
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        start = time.monotonic()
        gpu_train.train(device="cpu", epochs=3000)
        end = time.monotonic()
    finally:
        stop.set()
        t.join()
    margin = 0.2 * (end - start)
    inside = [x for x in ticks if start + margin < x < end - margin]
    assert end - start > 0.2
    assert len(inside) > 20, (len(inside), end - start)


def test_ctrl_c_stops_between_chunks_and_raises():
    """A KeyboardInterrupt half a second into a long run (about 16 s here) ends it within a
    chunk, with nothing returned. Python's own SIGINT handler is put in place for the test: a
    process started in the background (CI's, under nohup) inherits SIGINT ignored, and Python
    then installs none, so Ctrl-C could not reach it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    try:
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt, match="interrupted after epoch"):
            gpu_train.train(device="cpu", epochs=100_000, log_every=50)
        assert time.monotonic() - start < 10
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda: gpu_train.train(np.zeros((4, 3), np.int32), np.zeros((4, 1)), device="cpu"),
         ValueError, "x: dtype int32"),
        (lambda: gpu_train.train([[1.0, 2.0], [3.0]], [[1.0], [2.0]], device="cpu"),
         ValueError, "x: not a rectangular"),
        (lambda: gpu_train.train(np.zeros((2, 3, 4)), np.zeros((2, 1)), device="cpu"),
         ValueError, "x: a 3-D array"),
        (lambda: gpu_train.train(np.array([[1.0, np.nan]]), np.zeros((1, 1)), device="cpu"),
         ValueError, "x: value at row 0, column 1"),
        (lambda: gpu_train.train(np.zeros((5, 3)), np.zeros((4, 1)), device="cpu"),
         ValueError, "y has 4 rows but x has 5"),
        (lambda: gpu_train.train(np.zeros((5, 3)), None, device="cpu"),
         ValueError, "give both x and y"),
        (lambda: gpu_train.train(epoch=5), TypeError, "'epoch' (did you mean 'epochs'?)"),
        (lambda: gpu_train.train(lr="fast", device="cpu"), ValueError, "for lr:"),
        (lambda: gpu_train.train(lr=-1.0, device="cpu"), ValueError, "for lr:"),
        (lambda: gpu_train.train(layers=[1000], device="cpu"), ValueError, "for layers:"),
        (lambda: gpu_train.train(loss="hinge", device="cpu"), ValueError, "for loss:"),
        (lambda: gpu_train.train(optimizer="lion", device="cpu"), ValueError, "for optimizer"),
        (lambda: gpu_train.train(device="nope"), ValueError, "nope"),
        (lambda: gpu_train.train(layout="rows", device="cpu"), ValueError, "for layout:"),
        (lambda: gpu_train.train(val_split=1.5, device="cpu"), ValueError, "val_split"),
        (lambda: gpu_train.train(device="cpu", params={"0.weight": np.zeros((3, 3))}),
         ValueError, "params"),
        (lambda: gpu_train.train(device="cpu", params={"0.weight": np.zeros((100, 1000)),
                                                        "2.weight": np.zeros((10, 100)),
                                                        "4.weight": np.zeros((1, 1))}),
         ValueError, "`4.weight`"),
        (lambda: gpu_train.train(np.zeros((4, 3)), np.array([0, 1, -1, 2]), device="cpu",
                                 loss="cross-entropy"),
         ValueError, "negative"),
    ],
)
def test_bad_input_is_an_exception_naming_the_argument(call, error, needle):
    with pytest.raises(error) as e:
        call()
    assert needle in str(e.value)

"""gpu_train.sweep: every variant bit for bit its own gpu_train.train run, on the CPU path and the
GPU, a diverging variant beside finishing ones, and bad lists."""

import numpy as np
import pytest

import gpu_train
from conftest import FIXTURES


def assert_same_run(a, b, what):
    np.testing.assert_array_equal(a.losses, b.losses, err_msg=what)
    assert sorted(a.params) == sorted(b.params), what
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=f"{what}: {k}")


def test_every_variant_is_its_own_run(device):
    """Four variants (lr x seed) of a job with mini-batches (a short last batch), biases, Adam
    and a step schedule: each variant's losses and final tensors equal `train` with its values,
    bit for bit. A sweep that mixed up two models' buffers, shared one model's batches order, or
    ran the variants' values in another order would differ."""
    job = dict(layers=[20, 16, 3], rows=100, batch=32, bias=True, optimizer="adam",
               lr_schedule="step:5:0.5", epochs=12, device=device, tune="never")
    s = gpu_train.sweep(lr=[1e-3, 3e-3], seed=[0, 1], **job)
    assert s.varied == ["lr", "seed"]
    assert s.values == [{"lr": 1e-3, "seed": 0}, {"lr": 1e-3, "seed": 1},
                        {"lr": 3e-3, "seed": 0}, {"lr": 3e-3, "seed": 1}]
    for v, r in zip(s.values, s.results):
        assert np.float32(r.config["lr"]) == np.float32(v["lr"]) and r.config["seed"] == v["seed"]
        assert_same_run(r, gpu_train.train(**job, **v), str(v))
    # The variants really differ (else the comparisons above prove little).
    assert len({r.losses[-1] for r in s.results}) == 4
    # How they shared the device: the CPU's thread team, or the GPU's dispatches.
    assert ("thread" in s.batching) == (device == "cpu"), s.batching
    assert ("dispatches" in s.batching) == (device != "cpu"), s.batching
    assert s.batching in repr(s)


def test_a_diverging_variant_stops_alone(device):
    s = gpu_train.sweep(lr=[1e-6, 1.0], epochs=40, device=device, tune="never")
    fine, blown = s.results
    assert blown.diverged_at is not None and len(blown.losses) == blown.diverged_at + 1
    assert fine.diverged_at is None and len(fine.losses) == 40
    assert s.best() == 0
    assert_same_run(fine, gpu_train.train(lr=1e-6, epochs=40, device=device, tune="never"), "lr 1e-6")


def test_class_targets_with_a_held_out_split():
    """The digits as class indices with val_split: each variant's held-out accuracy is its own
    run's."""
    x = np.load(FIXTURES / "digits" / "train_x.npy")
    y = np.load(FIXTURES / "digits" / "train_y.npy")
    job = dict(preset="digits", epochs=8, batch=128, device="cpu", val_split=0.25)
    s = gpu_train.sweep(x, y, lr=[0.02, 0.05], seed=[4], **job)
    for v, r in zip(s.values, s.results):
        alone = gpu_train.train(x, y, **job, **v)
        assert r.accuracy == alone.accuracy and r.validation == alone.validation
        assert_same_run(r, alone, str(v))


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(lr=[]), "lr: an empty list"),
        (dict(seed=[1, 2, 1]), "seed: 1 is listed twice"),
        (dict(batch=[32, 64]), "batch cannot vary in a sweep"),
        (dict(loss=["sse", "mse"]), "loss cannot vary in a sweep"),
        (dict(lr=[1e-6, 2e-6, 3e-6], seed=[0, 1], max_variants=5),
         "the lists make 6 variants (lr 3 x seed 2), more than the cap of 5"),
        (dict(lr=[1e-6, "fast"]), "for lr:"),
    ],
)
def test_bad_lists_name_the_field(kw, needle):
    with pytest.raises(ValueError) as e:
        gpu_train.sweep(device="cpu", epochs=2, **kw)
    assert needle in str(e.value)

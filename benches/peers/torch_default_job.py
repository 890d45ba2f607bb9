"""The default job (batch 64, 1000 -> 100 -> 10, ReLU, sum of squared errors, SGD lr 1e-6, 500
epochs) in PyTorch on the CPU, float32, timed as the numpy original times itself (training only,
after the arrays exist): the PyTorch row of the CPU path's comparison in benches/README.md.

  python3 benches/peers/torch_default_job.py [--autograd] [--threads N] [--quiet]

--autograd: the loss's backward() and an in-place SGD step under no_grad, as a PyTorch user
writes it; without it, the manual backprop of the numpy original (the same five products).
Prints `final LOSS train_s SECONDS` (the format of ../shared/peers/seed_numpy.py)."""
import argparse, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=500)
p.add_argument("--lr", type=float, default=1e-6)
p.add_argument("--dims", default="64,1000,100,10")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's own)")
p.add_argument("--autograd", action="store_true")
p.add_argument("--quiet", action="store_true")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
N, D_in, H, D_out = map(int, a.dims.split(","))
g = torch.Generator().manual_seed(a.seed)
x = torch.randn(N, D_in, generator=g)
y = torch.randn(N, D_out, generator=g)
w1 = torch.randn(D_in, H, generator=g)
w2 = torch.randn(H, D_out, generator=g)
losses = []
t0 = time.perf_counter()
if a.autograd:
    w1.requires_grad_(True)
    w2.requires_grad_(True)
    for t in range(a.epochs):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.detach())
        loss.backward()
        with torch.no_grad():
            w1 -= a.lr * w1.grad
            w2 -= a.lr * w2.grad
            w1.grad = None
            w2.grad = None
else:
    with torch.no_grad():
        for t in range(a.epochs):
            h = x.mm(w1)
            h_relu = h.clamp(min=0)
            y_pred = h_relu.mm(w2)
            diff = y_pred - y
            losses.append(diff.pow(2).sum())
            grad_y_pred = 2.0 * diff
            grad_w2 = h_relu.t().mm(grad_y_pred)
            grad_h = grad_y_pred.mm(w2.t())
            grad_h[h < 0] = 0
            grad_w1 = x.t().mm(grad_h)
            w1 -= a.lr * grad_w1
            w2 -= a.lr * grad_w2
el = time.perf_counter() - t0
if not a.quiet:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for t in range(0, a.epochs, 50):
        print(t, float(losses[t]))
print(f"final {float(losses[-1])!r} train_s {el:.4f}")

#!/usr/bin/env python3
"""Mutation testing of the kernels: does `gpu-train verify` catch a wrong kernel?

Each mutant is one named source change to a copy of shaders/ (a term dropped, two operands
swapped, a loop bound off by one, `>` for `>=`, a stride or a transpose wrong, a padding mask
skipped, a hyperparameter misplaced ...). For each, `gpu-train verify --fail-fast` runs on the copy
through GPU_TRAIN_SHADER_DIR, on both layouts; the mutant is killed when verify exits 1 naming a
failing check. A mutant that survives is a gap in verify (or, written down in EQUIVALENT below, a
change that cannot alter any result).

    tests/mutants/run.py [--sample] [--only NAME,...] [--quick] [--binary PATH] [--device D] [--list]

--sample runs the fixed CI sample (SAMPLE below), --only the named mutants, --quick runs
`verify --quick` rather than the full suite (what CI does, to keep within its time). A mutant of
a layout's prelude (shaders/layout/L/) is verified in that layout only; the others in every
layout (`--quick`: the one training takes). Before the mutants, verify must pass on the
unmutated copy in each layout the mutants are verified in. Prints a table (the
mutant, its family, what killed it, seconds) and the score per family; exits 0 when every mutant
run was killed, 1 when one survived or the unmutated kernels fail, 2 when verify cannot run (no
adapter, a mutant that does not compile: a broken mutant proves nothing).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (name, family, file under shaders/, old text, new text). `old` must occur exactly once in the
# file (a "#N" suffix on the name's file picks the N-th occurrence instead, 1-based).
MUTANTS = [
    # matmul.wgsl: the product
    ("load-a-trans-kk-swapped", "matmul", "matmul.wgsl",
     "texel_a(q, k + 1u), texel_a(q, k + 2u)", "texel_a(q, k + 2u), texel_a(q, k + 1u)"),
    ("load-b-trans-cols-swapped", "matmul", "matmul.wgsl",
     "texel_b(q, cc + 1u), texel_b(q, cc + 2u)", "texel_b(q, cc + 2u), texel_b(q, cc + 1u)"),
    ("load-b-transpose-dropped", "matmul", "matmul.wgsl",
     "return transpose(mat4x4<f32>(texel_b(q, k),", "return (mat4x4<f32>(texel_b(q, k),"),
    ("mac-term-dropped", "matmul", "matmul.wgsl",
     "fma(x[3], vec4<f32>(y[0][3]), fma(x[2]", "(fma(x[2]"),
    ("mac-index-wrong", "matmul", "matmul.wgsl",
     "fma(x[1], vec4<f32>(y[1][1])", "fma(x[1], vec4<f32>(y[1][2])"),
    ("4x4-first-k-skipped", "matmul", "matmul.wgsl",
     "for (var k = 0u; k < k_end(); k += 4u) {\n        acc = mac(",
     "for (var k = 4u; k < k_end(); k += 4u) {\n        acc = mac("),
    ("8x8-store-offset", "matmul", "matmul.wgsl",
     "store(r + 4u, c0, c10);", "store(r + 4u, c0 + 4u, c10);"),
    ("8x8-b1-column", "matmul", "matmul.wgsl#1",
     "let b1 = load_b(k, c0 + 4u);", "let b1 = load_b(k, c0);"),
    ("16x16-a3-row", "matmul", "matmul.wgsl",
     "let a3 = load_a(r + 12u, k);", "let a3 = load_a(r + 8u, k);"),
    ("16x16-store-column", "matmul", "matmul.wgsl",
     "store(r + 12u, c0 + 12u, c3_3);", "store(r + 12u, c0 + 8u, c3_3);"),
    ("tiled-k-loop-short", "matmul", "matmul.wgsl",
     "for (var kb = 0u; kb < 4u; kb++)", "for (var kb = 0u; kb < 3u; kb++)"),
    ("tiled-b-block-row", "matmul", "matmul.wgsl",
     "let k = k0 + 4u * (j / 16u);", "let k = k0 + 4u * (j % 4u);"),
    # matmul.wgsl: the epilogues
    ("bias-on-padding-rows", "epilogue", "matmul.wgsl",
     "if (BIAS && row < params.rows) {", "if (BIAS) {"),
    ("sigmoid-column-mask-skipped", "epilogue", "matmul.wgsl",
     "let real = (col < vec4<u32>(params.cols)) & vec4<bool>(row < params.rows);",
     "let real = vec4<bool>(row < params.rows);"),
    ("gelu-keeps-output", "epilogue", "matmul.wgsl",
     "aux_out[i] = v;\n            }\n            var a = act_forward(v);",
     "aux_out[i] = act_forward(v);\n            }\n            var a = act_forward(v);"),
    ("gelu-grad-operands-swapped", "epilogue", "matmul.wgsl",
     "act_backward(v, aux_out[i])", "act_backward(aux_out[i], v)"),
    ("sq-err-operands-swapped", "epilogue", "matmul.wgsl",
     "let d = v - load_aux(c4, row);\n            store_c(c4, row, params.scalar * d);",
     "let d = load_aux(c4, row) - v;\n            store_c(c4, row, params.scalar * d);"),
    ("abs-err-abs-dropped", "epilogue", "matmul.wgsl",
     "aux_out[i] = abs(d);", "aux_out[i] = d;"),
    ("sum-term-dropped", "epilogue", "matmul.wgsl",
     "v = aux_out[i] + v;", "v = aux_out[i];"),
    ("logits-clamped", "epilogue", "matmul.wgsl",
     "case MODE_LOGITS: {\n            aux_out[i] = v;",
     "case MODE_LOGITS: {\n            aux_out[i] = max(v, vec4<f32>(0.0));"),
    ("update-lr-dropped", "optimizer", "optimizer.wgsl",
     "let lr = counter_f32(5u);", "let lr = 1.0;"),
    # the layouts' preludes of matmul.wgsl
    ("buffer-a-stride", "layout/buffer", "layout/buffer/matmul.wgsl",
     "select(params.k, params.m, TRANS_A)", "select(params.m, params.k, TRANS_A)"),
    ("buffer-b-stride", "layout/buffer", "layout/buffer/matmul.wgsl",
     "select(params.n, params.k, TRANS_B)", "select(params.k, params.n, TRANS_B)"),
    ("buffer-splitk-range-short", "layout/buffer", "layout/buffer/matmul.wgsl",
     "let k_hi = min(k_lo + params.k_split, k_end());",
     "let k_hi = min(k_lo + params.k_split - 4u, k_end());"),
    ("buffer-splitk-reduce-first-dropped", "layout/buffer", "layout/buffer/matmul.wgsl",
     "for (var z = 0u; z < splits; z++) {", "for (var z = 1u; z < splits; z++) {"),
    ("buffer-old-weights-row", "layout/buffer", "layout/buffer/matmul.wgsl",
     "fn load_old(c4: u32, row: u32) -> vec4<f32> {\n    return c[base_c + row * (params.n / 4u) + c4];",
     "fn load_old(c4: u32, row: u32) -> vec4<f32> {\n    return c[base_c + c4];"),
    ("buffer-aux-column", "layout/buffer", "layout/buffer/matmul.wgsl",
     "return aux[base_aux + row * (params.n / 4u) + c4];", "return aux[base_aux + row * (params.n / 4u)];"),
    ("texels-old-weights-row", "layout/texels", "layout/texels/matmul.wgsl",
     "fn load_old(c4: u32, row: u32) -> vec4<f32> {\n    return textureLoad(aux, vec2<u32>(c4, base_aux + row));",
     "fn load_old(c4: u32, row: u32) -> vec4<f32> {\n    return textureLoad(aux, vec2<u32>(c4, base_aux));"),
    ("texels-b-scaled-1e-3", "layout/texels", "layout/texels/matmul.wgsl",
     "return textureLoad(b, vec2<u32>(q, base_b + row));",
     "return textureLoad(b, vec2<u32>(q, base_b + row)) * 1.001;"),
    ("texels-k-extent-of-width", "layout/texels", "layout/texels/matmul.wgsl",
     "return 4u * max(d.x, d.y);", "return 4u * d.x;"),
    # Bands (the buffer layout past one storage binding): only verify's banded training run has
    # row0 > 0, so only it can kill these.
    ("band-offset-ignored", "epilogue", "matmul.wgsl",
     "let e = (row - params.row0) * (params.n / 4u) + c4;", "let e = row * (params.n / 4u) + c4;"),
    ("band-first-row-ignored-8x8", "matmul", "matmul.wgsl",
     "let r = params.row0 + gid.y * 8u;", "let r = gid.y * 8u;"),
    # activation.wgsl
    ("tanh-series-sign", "activation", "activation.wgsl",
     "x2 - 17.0 / 315.0)", "x2 + 17.0 / 315.0)"),
    ("tanh-sign-dropped", "activation", "activation.wgsl",
     "select(select(r, -r, z < vec4<f32>(0.0)), small, x < vec4<f32>(0.25))",
     "select(r, small, x < vec4<f32>(0.25))"),
    ("sigmoid-exp-sign", "activation", "activation.wgsl",
     "return 1.0 / (1.0 + exp(-z));", "return 1.0 / (1.0 + exp(z));"),
    ("leaky-operands-swapped", "activation", "activation.wgsl",
     "return select(SLOPE * z, z, z > vec4<f32>(0.0));", "return select(z, SLOPE * z, z > vec4<f32>(0.0));"),
    ("relu-grad-ge", "activation", "activation.wgsl",
     "return select(vec4<f32>(0.0), g, aux > vec4<f32>(0.0));",
     "return select(vec4<f32>(0.0), g, aux >= vec4<f32>(0.0));"),
    ("leaky-grad-slope-dropped", "activation", "activation.wgsl",
     "return select(SLOPE * g, g, aux > vec4<f32>(0.0));", "return select(g, g, aux > vec4<f32>(0.0));"),
    ("tanh-grad-square-dropped", "activation", "activation.wgsl",
     "return g * (1.0 - aux * aux);", "return g * (1.0 - aux);"),
    ("sigmoid-grad-term-dropped", "activation", "activation.wgsl",
     "return g * (aux * (1.0 - aux));", "return g * aux;"),
    ("gelu-pdf-exponent", "activation", "activation.wgsl",
     "exp(-0.5 * (aux * aux)) * 0.3989423", "exp(-(aux * aux)) * 0.3989423"),
    ("gelu-grad-term-dropped", "activation", "activation.wgsl",
     "return g * (normal_cdf(aux) + aux * pdf);", "return g * normal_cdf(aux);"),
    ("erfc-coefficient", "activation", "activation.wgsl",
     "p = p * t + 1.00002368;", "p = p * t + 1.0002368;"),
    ("normal-cdf-tails-swapped", "activation", "activation.wgsl",
     "return select(1.0 - e, e, z < vec4<f32>(0.0));", "return select(e, 1.0 - e, z < vec4<f32>(0.0));"),
    ("gelu-input-dropped", "activation", "activation.wgsl",
     "case ACT_GELU: { return z * normal_cdf(z); }", "case ACT_GELU: { return normal_cdf(z); }"),
    # optimizer.wgsl
    ("l2-decay-dropped", "optimizer", "optimizer.wgsl",
     "g = g0 + wd * p;", "g = g0;"),
    ("adamw-decay-dropped", "optimizer", "optimizer.wgsl",
     "p0 = p * (1.0 - lr * wd);", "p0 = p;"),
    ("schedule-ignored", "loss_reduce", "loss_reduce.wgsl",
     "state[st + 5u] = bitcast<u32>(lr);", "state[st + 5u] = state[st + 13u];"),
    ("momentum-mu-dropped", "optimizer", "optimizer.wgsl",
     "let m = mu * opt_state[i] + g;", "let m = opt_state[i] + g;"),
    ("nesterov-mu-dropped", "optimizer", "optimizer.wgsl",
     "s = g + mu * m;", "s = g + m;"),
    ("momentum-state-not-kept", "optimizer", "optimizer.wgsl",
     "opt_state[i] = m;\n            var s = m;", "var s = m;"),
    ("adam-betas-swapped", "optimizer", "optimizer.wgsl",
     "let b1 = hyper.x;\n            let b2 = hyper.y;", "let b1 = hyper.y;\n            let b2 = hyper.x;"),
    ("adam-eps-misplaced", "optimizer", "optimizer.wgsl",
     "let denom = sqrt(v) / sqrt(1.0 - b2t) + hyper.z;",
     "let denom = (sqrt(v) + hyper.z) / sqrt(1.0 - b2t);"),
    ("adam-bias-correction-dropped", "optimizer", "optimizer.wgsl",
     "let step_size = lr / (1.0 - b1t);", "let step_size = lr;"),
    ("adam-v-aliases-m", "optimizer", "optimizer.wgsl",
     "let iv = i + arrayLength(&opt_state) / 2u;", "let iv = i;"),
    # bias_update.wgsl and its preludes
    ("bias-first-row-skipped", "bias_update", "bias_update.wgsl",
     "for (var r = 0u; r < rows; r++) {", "for (var r = 1u; r < rows; r++) {"),
    ("bias-sum-term-dropped", "bias_update", "bias_update.wgsl",
     "s = acc[c4] + s;", "s = acc[c4];"),
    ("bias-state-index", "bias_update", "bias_update.wgsl",
     "b[i] = optimizer_apply(b[i], s, c4);", "b[i] = optimizer_apply(b[i], s, 0u);"),
    ("buffer-bias-g-column", "layout/buffer", "layout/buffer/bias_update.wgsl",
     "return g[base_g + row * params.cols4 + c4];", "return g[base_g + row * params.cols4];"),
    ("texels-bias-g-row", "layout/texels", "layout/texels/bias_update.wgsl",
     "return textureLoad(g, vec2<u32>(c4, base_g + row));",
     "return textureLoad(g, vec2<u32>(c4, base_g));"),
    # loss_reduce.wgsl and schedule.wgsl
    ("reduce-padding-read", "loss_reduce", "loss_reduce.wgsl",
     "s += values[base_values + (i / params.cols) * params.cols_padded + i % params.cols];",
     "s += values[base_values + i];"),
    ("reduce-tree-last-add-dropped", "loss_reduce", "loss_reduce.wgsl",
     "stride > 0u; stride /= 2u", "stride > 1u; stride /= 2u"),
    ("beta2-power-by-beta1", "loss_reduce", "loss_reduce.wgsl",
     "state[at + 3u] = bitcast<u32>(bitcast<f32>(state[at + 3u]) * beta2);",
     "state[at + 3u] = bitcast<u32>(bitcast<f32>(state[at + 3u]) * beta1);"),
    ("schedule-step-off-by-one", "loss_reduce", "loss_reduce.wgsl",
     "t - 1u,", "t,"),
    ("loss-scale-dropped", "loss_reduce", "loss_reduce.wgsl",
     "history[base_history + epoch] = partial[0] * params.scale;",
     "history[base_history + epoch] = partial[0];"),
    ("cosine-sign-kept", "schedule", "schedule.wgsl",
     "sign = -1.0;", "sign = 1.0;"),
    ("warmup-off-by-one", "schedule", "schedule.wgsl",
     "(f32(n) / f32(warm))", "(f32(n + 1u) / f32(warm))"),
    ("power-bit-test", "schedule", "schedule.wgsl",
     "if ((e & 1u) == 1u) {", "if ((e & 1u) == 0u) {"),
    ("cosine-series-sign", "schedule", "schedule.wgsl",
     "p = p * x2 - 1.0 / 720.0;", "p = p * x2 + 1.0 / 720.0;"),
    # cross_entropy.wgsl and its prelude
    ("ce-target-sum-dropped", "cross_entropy", "cross_entropy.wgsl",
     "gv[k] = (exp(z - m) / se * ys - yv[k]) * params.coef;",
     "gv[k] = (exp(z - m) / se - yv[k]) * params.coef;"),
    ("ce-log-sum-dropped", "cross_entropy", "cross_entropy.wgsl",
     "l += yv[k] * ((m - z) + ls);", "l += yv[k] * (m - z);"),
    ("ce-padding-rows-nonzero", "cross_entropy", "cross_entropy.wgsl",
     "store_grad(c4, r, vec4<f32>(0.0));", "store_grad(c4, r, vec4<f32>(1.0));"),
    ("ce-max-dropped", "cross_entropy", "cross_entropy.wgsl",
     "var m = values[base];\n        for (var j = 1u; j < cols; j++) {\n            m = max(m, values[base + j]);\n        }",
     "var m = 0.0;"),
    ("ce-coef-dropped", "cross_entropy", "cross_entropy.wgsl",
     "/ se * ys - yv[k]) * params.coef;", "/ se * ys - yv[k]);"),
    ("buffer-ce-y-stride", "layout/buffer", "layout/buffer/cross_entropy.wgsl",
     "return y[base_y + row * (params.cols_padded / 4u) + c4];",
     "return y[base_y + row * (params.cols_padded / 4u)];"),
    # gather.wgsl and its preludes
    ("gather-step-ignored", "gather", "gather.wgsl",
     "index[model * params.sindex + state[model * params.sstate] * params.batch + r]",
     "index[model * params.sindex + r]"),
    ("gather-y-by-batch-row", "gather", "gather.wgsl",
     "v = load_data_y(c4, src);", "v = load_data_y(c4, r);"),
    ("buffer-gather-x-stride", "layout/buffer", "layout/buffer/gather.wgsl",
     "return data_x[src * params.x_cols4 + c4];", "return data_x[src * params.y_cols4 + c4];"),
]

# A sweep's models in the same dispatches (model z of the grid): one model's stride, counters or
# slot used for another's. verify's sweep checks vary every per-model value.
MUTANTS += [
    ("model-counters-shared", "models", "optimizer.wgsl",
     "return bitcast<f32>(counters[count_base + word]);", "return bitcast<f32>(counters[word]);"),
    ("model-a-stride-dropped", "models", "layout/buffer/matmul.wgsl",
     "return a[base_a + row", "return a[row"),
    ("model-c-stride-dropped", "models", "matmul.wgsl",
     "base_c = model * params.sc;", "base_c = 0u;"),
    ("model-bias-stride-dropped", "models", "matmul.wgsl",
     "v += bias[base_bias + c4];", "v += bias[c4];"),
    ("model-bias-state-stride-dropped", "models", "bias_update.wgsl",
     "opt_base = gid.z * params.sopt;", "opt_base = 0u;"),
    ("model-bias-g-stride-dropped", "models", "bias_update.wgsl",
     "base_g = gid.z * params.sg;", "base_g = 0u;"),
    ("model-history-stride-dropped", "models", "loss_reduce.wgsl",
     "base_history = model * params.shistory;", "base_history = 0u;"),
    ("model-state-stride-dropped", "models", "loss_reduce.wgsl",
     "base_state = model * params.sstate;", "base_state = 0u;"),
    ("model-ce-y-stride-dropped", "models", "loss_reduce.wgsl",
     "base_y = model * params.sy;", "base_y = 0u;"),
    ("model-gather-row-dropped", "models", "gather.wgsl",
     "base_row = model * params.padded_rows;", "base_row = 0u;"),
    ("model-gather-data-shared", "models", "gather.wgsl",
     "src = model * params.sdata + index[", "src = index["),
    ("model-splitk-range-by-z", "models", "layout/buffer/matmul.wgsl",
     "let k_lo = (z % params.splits) * params.k_split;", "let k_lo = z * params.k_split;"),
    ("model-splitk-partials-shared", "models", "layout/buffer/matmul.wgsl",
     "let first = gid.z * params.splits;", "let first = 0u;"),
    # The texels layout: the models stacked down each texture, each from its own texel row.
    ("model-texels-a-row-dropped", "models", "layout/texels/matmul.wgsl",
     "textureLoad(a, vec2<u32>(q, base_a + row))", "textureLoad(a, vec2<u32>(q, row))"),
    ("model-texels-b-row-dropped", "models", "layout/texels/matmul.wgsl",
     "textureLoad(b, vec2<u32>(q, base_b + row))", "textureLoad(b, vec2<u32>(q, row))"),
    ("model-texels-c-row-dropped", "models", "layout/texels/matmul.wgsl",
     "textureStore(c, vec2<u32>(c4, base_c + row), v);", "textureStore(c, vec2<u32>(c4, row), v);"),
    ("model-texels-old-row-dropped", "models", "layout/texels/matmul.wgsl#2",
     "textureLoad(aux, vec2<u32>(c4, base_aux + row))", "textureLoad(aux, vec2<u32>(c4, row))"),
    ("model-texels-state-by-rows", "models", "layout/texels/matmul.wgsl",
     "return base_c * (params.n / 4u);", "return base_c;"),
    ("model-texels-g-row-dropped", "models", "layout/texels/bias_update.wgsl",
     "vec2<u32>(c4, base_g + row)", "vec2<u32>(c4, row)"),
    ("model-texels-ce-grad-row-dropped", "models", "layout/texels/cross_entropy.wgsl",
     "vec2<u32>(c4, base_values / params.cols_padded + row)", "vec2<u32>(c4, row)"),
    ("model-texels-gather-x-row-dropped", "models", "layout/texels/gather.wgsl",
     "textureStore(x, vec2<u32>(c4, base_row + row), v);", "textureStore(x, vec2<u32>(c4, row), v);"),
]

# Mutants that no result can show (name: why). None so far.
EQUIVALENT = {}

# The CI sample (with --quick): one or more per family, each killed within seconds.
SAMPLE = [
    "mac-term-dropped",
    "tiled-k-loop-short",
    "sigmoid-column-mask-skipped",
    "buffer-bias-g-column",
    "texels-old-weights-row",
    "relu-grad-ge",
    "adamw-decay-dropped",
    "adam-eps-misplaced",
    "bias-state-index",
    "schedule-step-off-by-one",
    "ce-target-sum-dropped",
    "model-counters-shared",
]


def apply(text, old, new, nth):
    count = text.count(old)
    if nth is None:
        if count != 1:
            raise ValueError(f"occurs {count} times, not once: {old!r}")
        return text.replace(old, new)
    at = -1
    for _ in range(nth):
        at = text.index(old, at + 1)
    return text[:at] + new + text[at + len(old):]


def layout_of(path, family=None):
    """The layout a mutant is verified in (None: every layout): its file's. (The "models" family's
    too: a sweep's models share their dispatches in both layouts.)"""
    del family
    parts = path.split("/")
    if parts[0] == "layout":
        return parts[1]
    return None


def run_verify(binary, shader_dir, device, quick, layout):
    """verify --fail-fast (in `layout`, else every one): (exit code, the first failing check or
    the error, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "verify.json")
        cmd = [binary, "verify", "--fail-fast", "--json", report]
        if device:
            cmd += ["--device", device]
        if quick:
            cmd += ["--quick"]
        if layout:
            cmd += ["--layout", layout]
        env = dict(os.environ, GPU_TRAIN_SHADER_DIR=shader_dir)
        env.setdefault("XDG_RUNTIME_DIR", "/tmp")
        t = time.time()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        took = time.time() - t
        what, covered = "", set()
        if os.path.exists(report):
            with open(report) as f:
                checks = json.load(f)["checks"]
            covered = {c["layout"] for c in checks}
            failed = [c for c in checks if not c["passed"]]
            if failed:
                c = failed[0]
                what = f"{c['kernel']} {c['variant']} {c['layout']} {c['shape']}"
        if not what:
            lines = (p.stderr.strip() or p.stdout.strip()).splitlines()
            what = lines[-1] if lines else ""
        return p.returncode, what, took, covered


def stale_mutants(shader_dir):
    """The mutants whose text does not stand in their file as `apply` needs it, with why."""
    out = []
    for name, _, path, old, new in MUTANTS:
        file, _, nth = path.partition("#")
        try:
            with open(os.path.join(shader_dir, file)) as f:
                apply(f.read(), old, new, int(nth) if nth else None)
        except (OSError, ValueError) as e:
            out.append(f"{name}: {e}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", action="store_true", help="the fixed CI sample only")
    ap.add_argument("--only", help="comma-separated mutant names")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpu-train"))
    ap.add_argument("--device", default="gpu", help="the adapter to verify (default: gpu, the first)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--quick", action="store_true", help="verify --quick rather than the full suite")
    args = ap.parse_args()

    chosen = MUTANTS
    if args.sample or args.only:
        names = SAMPLE if args.sample else args.only.split(",")
        known = {m[0] for m in MUTANTS}
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"error: no mutant named {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        chosen = [m for m in MUTANTS if m[0] in names]
    if args.list:
        for name, family, path, _, _ in chosen:
            print(f"{name:40} {family:16} {path}")
        return 0
    # Every mutant must still apply to the shaders as they are (not only those chosen): one
    # whose text a change rewrote would otherwise stop being run without a word.
    stale = stale_mutants(os.path.join(ROOT, "shaders"))
    if stale:
        print("error: mutants that no longer apply to the shaders (update their text):\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 2
    if not os.path.exists(args.binary):
        print(f"error: {args.binary} not found (cargo build --release)", file=sys.stderr)
        return 2

    src = os.path.join(ROOT, "shaders")
    with tempfile.TemporaryDirectory() as tmp:
        clean = os.path.join(tmp, "clean")
        shutil.copytree(src, clean)
        layouts = sorted({layout_of(m[2].partition("#")[0], m[1]) for m in chosen}, key=str)
        verified = set()
        for layout in layouts:
            if layout in verified:
                continue
            code, what, took, covered = run_verify(args.binary, clean, args.device, args.quick, layout)
            verified |= covered
            if code != 0:
                print(f"error: verify of the unmutated kernels exits {code}: {what}", file=sys.stderr)
                return 2 if code == 2 else 1
            where = f"the {layout} layout" if layout else ", ".join(sorted(covered))
            print(f"unmutated kernels, {where}: verify passes ({took:.1f} s)")
        print()
        print(f"{'mutant':40} {'family':16} {'result':9} {'seconds':>7}  killed by")
        results = []
        for name, family, path, old, new in chosen:
            file, _, nth = path.partition("#")
            work = os.path.join(tmp, name)
            shutil.copytree(src, work)
            target = os.path.join(work, file)
            with open(target) as f:
                text = f.read()
            try:
                text = apply(text, old, new, int(nth) if nth else None)
            except ValueError as e:
                print(f"error: mutant {name} does not apply to shaders/{file}: {e}", file=sys.stderr)
                return 2
            with open(target, "w") as f:
                f.write(text)
            code, what, took, _ = run_verify(args.binary, work, args.device, args.quick, layout_of(file, family))
            shutil.rmtree(work)
            if code == 1:
                result = "killed"
            elif code == 0:
                result = "EQUIVALENT" if name in EQUIVALENT else "SURVIVED"
                what = EQUIVALENT.get(name, "-")
            else:
                print(f"error: mutant {name}: verify exits {code}: {what}", file=sys.stderr)
                return 2
            results.append((name, family, result))
            print(f"{name:40} {family:16} {result:9} {took:7.1f}  {what}", flush=True)

    print("\nfamily            killed / total")
    families = sorted({f for _, f, _ in results})
    for fam in families:
        rs = [r for _, f, r in results if f == fam]
        print(f"{fam:16} {rs.count('killed'):6} / {len(rs)}")
    killed = sum(r == "killed" for _, _, r in results)
    equivalent = sum(r == "EQUIVALENT" for _, _, r in results)
    print(f"\nmutation score: {killed} / {len(results) - equivalent} killed"
          + (f" ({equivalent} equivalent)" if equivalent else ""))
    survived = [n for n, _, r in results if r == "SURVIVED"]
    if survived:
        print(f"survived: {', '.join(survived)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

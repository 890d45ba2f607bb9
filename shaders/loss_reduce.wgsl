// Deterministic sum of the per-element losses into the history buffer (times the loss's scale),
// and the epoch counter.
//
// `values` is a [rows, cols] matrix stored with its columns padded to `cols_padded` (see
// matmul.wgsl); element i of the unpadded row-major order is summed by invocation i mod 256, in
// increasing i, then a halving tree adds the 256 partial sums. No atomics, so the same inputs
// always give the same bits, and the CPU path's `loss_reduce` follows the same order.
//
// state[0] is the epoch index within the current chunk, kept on the GPU: the loss of this epoch
// goes to history[state[0]], then the index moves on.

struct Params {
    len: u32,          // rows * cols
    cols: u32,
    cols_padded: u32,
    scale: f32,        // the loss is scale * the sum (1 for sse, 1/N for means, 1/2 for half-sse)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> history: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<u32>;

const WIDTH: u32 = 256u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn loss_reduce(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < params.len; i += WIDTH) {
        s += values[(i / params.cols) * params.cols_padded + i % params.cols];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WIDTH / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let epoch = state[0];
        history[epoch] = partial[0] * params.scale;
        state[0] = epoch + 1u;
    }
}

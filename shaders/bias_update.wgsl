// A layer's bias gradient and its update: db[j] = sum over the batch rows of g[r, j], summed row
// by row in order (deterministic, no atomics; the CPU's `bias_update` follows the same order),
// then b = db (STORE: the gradient alone, for checks) or the SGD step b = b - lr * db.
//
// g is the gradient w.r.t. the layer's output, an rgba32float matrix texture (see matmul.wgsl);
// b is n/4 vec4 in a storage buffer (read by the forward product's epilogue). One invocation per
// 4 columns.

override STORE: bool = false;

struct Params {
    rows: u32,   // real batch rows of g
    cols4: u32,  // padded columns / 4
    lr: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var g: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bias_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    if (c4 >= params.cols4) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var r = 0u; r < params.rows; r++) {
        s += textureLoad(g, vec2<u32>(c4, r));
    }
    if (STORE) {
        b[c4] = s;
    } else {
        b[c4] = b[c4] - params.lr * s;
    }
}

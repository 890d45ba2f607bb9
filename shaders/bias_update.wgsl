// A layer's bias gradient and its update: db[j] = sum over the batch rows of g[r, j], summed row
// by row in order (deterministic, no atomics; the CPU's `bias_update` follows the same order),
// then b = db (STORE: the gradient alone, for checks) or the optimizer step of optimizer.wgsl
// (put in front of this file).
//
// g is the gradient w.r.t. the layer's output, a matrix in the layout of matmul.wgsl (declared,
// with load_g and g_rows, by the layout's prelude shaders/layout/<layout>/bias_update.wgsl);
// b is n/4 vec4 in a storage buffer (read by the forward product's epilogue). One invocation per
// 4 columns, per model (workgroup_id.z).
//
// A shared layer's bias gradient is summed over its uses in acc (as matmul.wgsl sums its weight
// gradient): ACC_IN adds the sum so far (db = acc + db), ACC_OUT writes db to acc and stops there.

override STORE: bool = false;
override ACC_IN: bool = false;
override ACC_OUT: bool = false;

struct Params {
    rows: u32,   // real batch rows of g
    cols4: u32,  // padded columns / 4
    // Models (a sweep's, in one dispatch: workgroup_id.z): between one model's g and the next
    // (vec4, or texel rows in the texels layout), the vec4 between its b and the next, its
    // optimizer state and the next, and the words between their step counters; 0 for a lone run.
    sg: u32,
    sb: u32,
    sopt: u32,
    scount: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Binding 1 (g): the layout's prelude.
@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec4<f32>>;

// Where this invocation's model starts in g (read by the layout's load_g).
var<private> base_g: u32;
// Bindings 7-8: the optimizer's state of the bias, declared in optimizer.wgsl.

@compute @workgroup_size(64)
fn bias_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    base_g = gid.z * params.sg;
    opt_base = gid.z * params.sopt;
    count_base = gid.z * params.scount;
    if (c4 >= params.cols4) {
        return;
    }
    let i = gid.z * params.sb + c4;
    var s = vec4<f32>(0.0);
    // params.rows, in a form the compiler cannot treat as a uniform value: Mesa's gallium drivers
    // (lavapipe) inline uniforms that bound loops and compile a variant per value, which made
    // this kernel recompile at every dispatch for rows <= 32 (100x slower; benches/README.md).
    // g has at least `rows` rows, so the min changes nothing.
    let rows = min(params.rows, g_rows());
    for (var r = 0u; r < rows; r++) {
        s += load_g(c4, r);
    }
    if (ACC_IN) {
        s = acc[c4] + s;
    }
    if (ACC_OUT) {
        acc[c4] = s;
        return;
    }
    if (STORE) {
        b[i] = s;
        return;
    }
    b[i] = optimizer_apply(b[i], s, c4);
}

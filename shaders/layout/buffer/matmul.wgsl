// matmul.wgsl's matrices in the `buffer` layout: row-major storage buffers of vec4, element
// (row, 4q..4q+3) at row * cols/4 + q (cols padded to a multiple of 4, as in every layout). Put in
// front of matmul.wgsl (module-scope order does not matter in WGSL: `params` and the overrides are
// declared there).
//
// The layout of real GPUs and of every browser: vec4 storage-buffer loads run at full rate where
// rgba32float texture loads run at half (NVIDIA) or slower, and Firefox and Safari cannot read
// rgba32float storage textures at all. C is read_write, so the weight update (MODE 3) steps the
// weights in place: each invocation reads the elements it then writes, after every product that
// reads the old weights in the step (the host orders them so).

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> aux: array<vec4<f32>>;

fn texel_a(q: u32, row: u32) -> vec4<f32> {
    // stored [K, M] when TRANS_A, else [M, K]
    return a[base_a + row * (select(params.k, params.m, TRANS_A) / 4u) + q];
}

fn texel_b(q: u32, row: u32) -> vec4<f32> {
    // stored [N, K] when TRANS_B, else [K, N]
    return b[base_b + row * (select(params.n, params.k, TRANS_B) / 4u) + q];
}

fn load_aux(c4: u32, row: u32) -> vec4<f32> {
    return aux[base_aux + row * (params.n / 4u) + c4];
}

// The parameters before the optimizer step: C itself (updated in place).
fn load_old(c4: u32, row: u32) -> vec4<f32> {
    return c[base_c + row * (params.n / 4u) + c4];
}

fn store_c(c4: u32, row: u32, v: vec4<f32>) {
    c[base_c + row * (params.n / 4u) + c4] = v;
}

// Where this invocation's model starts in AUX_OUT and the optimizer's state, in vec4: C's own.
fn c_vec4_base() -> u32 {
    return base_c;
}

// At least K, from A's size: see k_end in matmul.wgsl (every model's A, where they are many).
fn a_extent() -> u32 {
    return 4u * arrayLength(&a);
}

// Split-K, for skinny products whose C has too few tiles to fill a GPU (the default job's x·w1,
// 64x100x1000: 8 tiles of 32x32). Two passes, no atomics, so the result is the same bits every run:
//   matmul_splitk         workgroup (x, y, z) computes the 32x32 tile (x, y) of the partial product
//                         over K range z % splits (k_split deep) of model z / splits, 4x4 results
//                         per invocation, into C, bound here to a scratch buffer of `splits`
//                         partial matrices (band rows each) per model;
//   matmul_splitk_reduce  one invocation per 4x4 block of C (of model z) sums the model's partials
//                         in the order 0, 1, ... (read through A, bound to the scratch) and
//                         applies the epilogue.
// They live in this prelude since only buffers can be written by one pass and read by the next.
fn partial_at(z: u32, row: u32, c4: u32) -> u32 {
    return (z * (params.row_end - params.row0) + (row - params.row0)) * (params.n / 4u) + c4;
}

@compute @workgroup_size(8, 8)
fn matmul_splitk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = params.row0 + gid.y * 4u;
    let c0 = gid.x * 4u;
    // partial z of the scratch: range z % splits of model z / splits
    let z = gid.z;
    set_model(z / params.splits);
    if (r >= params.row_end || c0 >= params.n) {
        return;
    }
    let k_lo = (z % params.splits) * params.k_split;
    let k_hi = min(k_lo + params.k_split, k_end());
    var acc = mat4x4<f32>();
    for (var k = k_lo; k < k_hi; k += 4u) {
        acc = mac(acc, load_a(r, k), load_b(k, c0));
    }
    let t = transpose(acc);
    let c4 = c0 / 4u;
    for (var i = 0u; i < 4u; i++) {
        if (r + i < params.row_end) {
            c[partial_at(z, r + i, c4)] = t[i];
        }
    }
}

@compute @workgroup_size(8, 8)
fn matmul_splitk_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = params.row0 + gid.y;
    let c4 = gid.x;
    set_model(gid.z);
    if (row >= params.row_end || c4 >= params.n / 4u) {
        return;
    }
    // The bound in a form the compiler cannot treat as a uniform value (see k_end).
    let splits = min(params.splits, arrayLength(&a));
    let first = gid.z * params.splits;
    var v = vec4<f32>(0.0);
    for (var z = 0u; z < splits; z++) {
        v += a[partial_at(first + z, row, c4)];
    }
    epilogue(row, c4, v);
}

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
    return a[row * (select(params.k, params.m, TRANS_A) / 4u) + q];
}

fn texel_b(q: u32, row: u32) -> vec4<f32> {
    // stored [N, K] when TRANS_B, else [K, N]
    return b[row * (select(params.n, params.k, TRANS_B) / 4u) + q];
}

fn load_aux(c4: u32, row: u32) -> vec4<f32> {
    return aux[row * (params.n / 4u) + c4];
}

// The parameters before the optimizer step: C itself (updated in place).
fn load_old(c4: u32, row: u32) -> vec4<f32> {
    return c[row * (params.n / 4u) + c4];
}

fn store_c(c4: u32, row: u32, v: vec4<f32>) {
    c[row * (params.n / 4u) + c4] = v;
}

// At least K, from A's size: see k_end in matmul.wgsl.
fn a_extent() -> u32 {
    return 4u * arrayLength(&a);
}

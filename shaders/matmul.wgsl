// Tiled matrix product with a fused epilogue: the one kernel behind every product of training.
//
//   C[M,N] = op(A)[M,K] · op(B)[K,N]
//
// A is stored [M,K] row-major, or [K,M] when TRANS_A (so xᵀ·g reads x as it is);
// B is stored [K,N], or [N,K] when TRANS_B (so g·wᵀ reads w as it is). No transposed copies.
//
// A workgroup of 16x16 invocations computes a 64x64 tile of C; each invocation a 4x4 block of it,
// kept in four vec4 accumulators. The K dimension is walked in steps of TK, with the A and B tiles
// staged in workgroup memory as vec4s. Loads outside the matrices read 0 and stores outside them
// are skipped, so any shape works, not only multiples of the tile.
//
// MODE picks the epilogue (what happens to each result v at C[row,col]):
//   0 store   C = v                                  (plain product, tests and gradients)
//   1 relu    C = max(v, 0)                          (hidden layer forward)
//   2 mask    C = v if AUX > 0 else 0                (input gradient through the ReLU: AUX = a)
//   3 sgd     C = C - lr * v                         (weight gradient fused with the SGD step)
//   4 sse     d = v - AUX; C = 2d; AUX_OUT = d*d     (output layer fused with the loss: AUX = y)

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override MODE: u32 = 0u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lr: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> aux_out: array<f32>;

const TM: u32 = 64u;  // tile rows
const TN: u32 = 64u;  // tile columns
const TK: u32 = 16u;  // depth of one staged step

// as_tile[kk * 16 + i] holds A rows 4i..4i+3 at depth kk; bs_tile[kk * 16 + j] B columns 4j..4j+3.
var<workgroup> as_tile: array<vec4<f32>, 256>;
var<workgroup> bs_tile: array<vec4<f32>, 256>;

fn load_a(row: u32, kk: u32) -> f32 {
    if (row >= params.m || kk >= params.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[kk * params.m + row];
    }
    return a[row * params.k + kk];
}

fn load_b(kk: u32, col: u32) -> f32 {
    if (kk >= params.k || col >= params.n) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[col * params.k + kk];
    }
    return b[kk * params.n + col];
}

fn epilogue(row: u32, col: u32, v: f32) {
    if (row >= params.m || col >= params.n) {
        return;
    }
    let i = row * params.n + col;
    switch MODE {
        case 1u: { c[i] = max(v, 0.0); }
        case 2u: { c[i] = select(0.0, v, aux[i] > 0.0); }
        case 3u: { c[i] = c[i] - params.lr * v; }
        case 4u: {
            let d = v - aux[i];
            c[i] = 2.0 * d;
            aux_out[i] = d * d;
        }
        default: { c[i] = v; }
    }
}

fn store_row(row: u32, col0: u32, v: vec4<f32>) {
    epilogue(row, col0, v.x);
    epilogue(row, col0 + 1u, v.y);
    epilogue(row, col0 + 2u, v.z);
    epilogue(row, col0 + 3u, v.w);
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let t = lid.y * 16u + lid.x;
    // Which vec4 of each tile this invocation stages: depth t/16, rows (or columns) 4*(t%16)...
    let ld_k = t / 16u;
    let ld_i = (t % 16u) * 4u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let ka = k0 + ld_k;
        as_tile[t] = vec4<f32>(
            load_a(row0 + ld_i, ka),
            load_a(row0 + ld_i + 1u, ka),
            load_a(row0 + ld_i + 2u, ka),
            load_a(row0 + ld_i + 3u, ka),
        );
        bs_tile[t] = vec4<f32>(
            load_b(ka, col0 + ld_i),
            load_b(ka, col0 + ld_i + 1u),
            load_b(ka, col0 + ld_i + 2u),
            load_b(ka, col0 + ld_i + 3u),
        );
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let av = as_tile[kk * 16u + lid.y];
            let bv = bs_tile[kk * 16u + lid.x];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    let r = row0 + lid.y * 4u;
    let cc = col0 + lid.x * 4u;
    store_row(r, cc, acc0);
    store_row(r + 1u, cc, acc1);
    store_row(r + 2u, cc, acc2);
    store_row(r + 3u, cc, acc3);
}

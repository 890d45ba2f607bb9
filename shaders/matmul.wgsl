// Matrix product with a fused epilogue: the one kernel behind every product of training.
//
//   C[M,N] = op(A)[M,K] · op(B)[K,N]
//
// A is stored [M,K] row-major, or [K,M] when TRANS_A (so xᵀ·g reads x as it is);
// B is stored [K,N], or [N,K] when TRANS_B (so g·wᵀ reads w as it is). No transposed copies.
//
// Layout: on the GPU every matrix is stored with both dimensions padded to a multiple of 4 and the
// padding filled with zeros, so M, N and K here are multiples of 4 and every row starts on a
// vec4. Zero padding keeps the products exact, and every epilogue below maps a zero result to zero,
// so the padding of each output stays zero for the next kernel to read.
//
// Work split: each invocation computes an 8x8 block of C as four 4x4 blocks (mat4x4), walking K
// four at a time: per step it loads a 8x4 block of A and a 4x8 block of B as 16 vec4 loads and
// does 256 multiply-adds. Few, wide loads per multiply-add is what matters on every device, most
// of all on CPU implementations such as lavapipe, where each load instruction costs a loop over
// the SIMD lanes. A workgroup of 8x8 invocations covers a 64x64 tile of C.
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
    m: u32,  // padded: multiples of 4
    n: u32,
    k: u32,
    lr: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> aux: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> aux_out: array<vec4<f32>>;

// The 4x4 block of op(A) at rows r..r+3, depth k..k+3, as a matrix whose column kk is
// A[r..r+3, k+kk]. A block past the last row is read from the last one and never stored.
fn load_a(r: u32, k: u32) -> mat4x4<f32> {
    let rr = min(r, params.m - 4u);
    if (TRANS_A) {
        // stored [K, M]: row k+kk of memory is column k+kk of op(A)
        let m4 = params.m / 4u;
        let q = rr / 4u;
        return mat4x4<f32>(a[k * m4 + q], a[(k + 1u) * m4 + q], a[(k + 2u) * m4 + q], a[(k + 3u) * m4 + q]);
    }
    // stored [M, K]: row r+i of memory holds A[r+i, k..k+3], a row of the block
    let k4 = params.k / 4u;
    let q = k / 4u;
    return transpose(mat4x4<f32>(a[rr * k4 + q], a[(rr + 1u) * k4 + q], a[(rr + 2u) * k4 + q], a[(rr + 3u) * k4 + q]));
}

// The 4x4 block of op(B) at depth k..k+3, columns c0..c0+3, as a matrix whose column j is
// B[k..k+3, c0+j]. A block past the last column is read from the last one and never stored.
fn load_b(k: u32, c0: u32) -> mat4x4<f32> {
    let cc = min(c0, params.n - 4u);
    if (TRANS_B) {
        // stored [N, K]: row c0+j of memory holds B[k..k+3, c0+j], a column of the block
        let k4 = params.k / 4u;
        let q = k / 4u;
        return mat4x4<f32>(b[cc * k4 + q], b[(cc + 1u) * k4 + q], b[(cc + 2u) * k4 + q], b[(cc + 3u) * k4 + q]);
    }
    // stored [K, N]: row k+kk of memory holds B[k+kk, c0..c0+3], a row of the block
    let n4 = params.n / 4u;
    let q = cc / 4u;
    return transpose(mat4x4<f32>(b[k * n4 + q], b[(k + 1u) * n4 + q], b[(k + 2u) * n4 + q], b[(k + 3u) * n4 + q]));
}

// acc + x·y for 4x4 blocks, as explicit fused multiply-adds in k order.
fn mac(acc: mat4x4<f32>, x: mat4x4<f32>, y: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        fma(x[3], vec4<f32>(y[0][3]), fma(x[2], vec4<f32>(y[0][2]), fma(x[1], vec4<f32>(y[0][1]), fma(x[0], vec4<f32>(y[0][0]), acc[0])))),
        fma(x[3], vec4<f32>(y[1][3]), fma(x[2], vec4<f32>(y[1][2]), fma(x[1], vec4<f32>(y[1][1]), fma(x[0], vec4<f32>(y[1][0]), acc[1])))),
        fma(x[3], vec4<f32>(y[2][3]), fma(x[2], vec4<f32>(y[2][2]), fma(x[1], vec4<f32>(y[2][1]), fma(x[0], vec4<f32>(y[2][0]), acc[2])))),
        fma(x[3], vec4<f32>(y[3][3]), fma(x[2], vec4<f32>(y[3][2]), fma(x[1], vec4<f32>(y[3][1]), fma(x[0], vec4<f32>(y[3][0]), acc[3])))),
    );
}

// Apply the epilogue to C[row, 4*c4 .. 4*c4+3].
fn epilogue(row: u32, c4: u32, v: vec4<f32>) {
    let n4 = params.n / 4u;
    if (row >= params.m || c4 >= n4) {
        return;
    }
    let i = row * n4 + c4;
    switch MODE {
        case 1u: { c[i] = max(v, vec4<f32>(0.0)); }
        case 2u: { c[i] = select(vec4<f32>(0.0), v, aux[i] > vec4<f32>(0.0)); }
        case 3u: { c[i] = c[i] - params.lr * v; }
        case 4u: {
            let d = v - aux[i];
            c[i] = 2.0 * d;
            aux_out[i] = d * d;
        }
        default: { c[i] = v; }
    }
}

// Store a 4x4 block (column j = C[r..r+3, c0+j]) row by row.
fn store(r: u32, c0: u32, acc: mat4x4<f32>) {
    let t = transpose(acc);
    let c4 = c0 / 4u;
    epilogue(r, c4, t[0]);
    epilogue(r + 1u, c4, t[1]);
    epilogue(r + 2u, c4, t[2]);
    epilogue(r + 3u, c4, t[3]);
}

@compute @workgroup_size(8, 8)
fn matmul_8x8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y * 8u;
    let c0 = gid.x * 8u;
    if (r >= params.m || c0 >= params.n) {
        return;
    }
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    for (var k = 0u; k < params.k; k += 4u) {
        let a0 = load_a(r, k);
        let a1 = load_a(r + 4u, k);
        let b0 = load_b(k, c0);
        let b1 = load_b(k, c0 + 4u);
        c00 = mac(c00, a0, b0);
        c01 = mac(c01, a0, b1);
        c10 = mac(c10, a1, b0);
        c11 = mac(c11, a1, b1);
    }
    store(r, c0, c00);
    store(r, c0 + 4u, c01);
    store(r + 4u, c0, c10);
    store(r + 4u, c0 + 4u, c11);
}

// The same product with a 16x16 block per invocation (sixteen 4x4 blocks: 32 vec4 loads per 1024
// multiply-adds, half the loads per multiply-add of `matmul_8x8`) and 4x4 invocations per
// workgroup, so the workgroup still covers a 64x64 tile. Meant for CPU implementations (lavapipe),
// where a load costs far more than keeping many accumulators; GPUs would run out of registers.
// (Generated pattern: the same lines as `matmul_8x8`, written out for each block.)
@compute @workgroup_size(4, 4)
fn matmul_16x16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y * 16u;
    let c0 = gid.x * 16u;
    if (r >= params.m || c0 >= params.n) {
        return;
    }
    var c0_0 = mat4x4<f32>();
    var c0_1 = mat4x4<f32>();
    var c0_2 = mat4x4<f32>();
    var c0_3 = mat4x4<f32>();
    var c1_0 = mat4x4<f32>();
    var c1_1 = mat4x4<f32>();
    var c1_2 = mat4x4<f32>();
    var c1_3 = mat4x4<f32>();
    var c2_0 = mat4x4<f32>();
    var c2_1 = mat4x4<f32>();
    var c2_2 = mat4x4<f32>();
    var c2_3 = mat4x4<f32>();
    var c3_0 = mat4x4<f32>();
    var c3_1 = mat4x4<f32>();
    var c3_2 = mat4x4<f32>();
    var c3_3 = mat4x4<f32>();
    for (var k = 0u; k < params.k; k += 4u) {
        let a0 = load_a(r + 0u, k);
        let a1 = load_a(r + 4u, k);
        let a2 = load_a(r + 8u, k);
        let a3 = load_a(r + 12u, k);
        let b0 = load_b(k, c0 + 0u);
        let b1 = load_b(k, c0 + 4u);
        let b2 = load_b(k, c0 + 8u);
        let b3 = load_b(k, c0 + 12u);
        c0_0 = mac(c0_0, a0, b0);
        c0_1 = mac(c0_1, a0, b1);
        c0_2 = mac(c0_2, a0, b2);
        c0_3 = mac(c0_3, a0, b3);
        c1_0 = mac(c1_0, a1, b0);
        c1_1 = mac(c1_1, a1, b1);
        c1_2 = mac(c1_2, a1, b2);
        c1_3 = mac(c1_3, a1, b3);
        c2_0 = mac(c2_0, a2, b0);
        c2_1 = mac(c2_1, a2, b1);
        c2_2 = mac(c2_2, a2, b2);
        c2_3 = mac(c2_3, a2, b3);
        c3_0 = mac(c3_0, a3, b0);
        c3_1 = mac(c3_1, a3, b1);
        c3_2 = mac(c3_2, a3, b2);
        c3_3 = mac(c3_3, a3, b3);
    }
    store(r + 0u, c0 + 0u, c0_0);
    store(r + 0u, c0 + 4u, c0_1);
    store(r + 0u, c0 + 8u, c0_2);
    store(r + 0u, c0 + 12u, c0_3);
    store(r + 4u, c0 + 0u, c1_0);
    store(r + 4u, c0 + 4u, c1_1);
    store(r + 4u, c0 + 8u, c1_2);
    store(r + 4u, c0 + 12u, c1_3);
    store(r + 8u, c0 + 0u, c2_0);
    store(r + 8u, c0 + 4u, c2_1);
    store(r + 8u, c0 + 8u, c2_2);
    store(r + 8u, c0 + 12u, c2_3);
    store(r + 12u, c0 + 0u, c3_0);
    store(r + 12u, c0 + 4u, c3_1);
    store(r + 12u, c0 + 8u, c3_2);
    store(r + 12u, c0 + 12u, c3_3);
}

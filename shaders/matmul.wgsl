// Matrix product with a fused epilogue: the one kernel behind every product of training.
//
//   C[M,N] = op(A)[M,K] · op(B)[K,N]
//
// A is stored [M,K] row-major, or [K,M] when TRANS_A (so xᵀ·g reads x as it is);
// B is stored [K,N], or [N,K] when TRANS_B (so g·wᵀ reads w as it is). No transposed copies.
//
// Layout: every matrix is padded with zeros to a multiple of 4 in both dimensions, so M, N and K
// here are multiples of 4 and a row is a whole number of vec4. Zero padding keeps the products
// exact, and every epilogue below maps a zero result to zero, so the padding of each output stays
// zero for the next kernel to read. Where the vec4 live is the layout's: a prelude put in front of
// this file (shaders/layout/<layout>/matmul.wgsl) declares A, B, C and AUX and provides the few
// functions this body reads and writes through (texel_a, texel_b, load_aux, load_old, store_c,
// a_extent):
//   texels  rgba32float storage textures, one texel per vec4 (CPU implementations such as lavapipe
//           load these fastest: a texel fetch is a branch-free vector gather, a storage-buffer
//           load a loop over the SIMD lanes with a branch and a bounds check for each; 9x on the
//           big products, benches/README.md); the weight update writes the other texture of a pair;
//   buffer  row-major vec4 storage buffers (real GPUs and every browser); weights updated in place.

// Work split: each invocation computes a block of C made of 4x4 blocks (mat4x4), walking K four at
// a time: per step it loads a 4x4 block of A and of B for each of its block rows and columns
// (four texel fetches each) and does 64 multiply-adds per pair. Few, wide loads per multiply-add
// is what matters on every device.
//
// MODE picks the epilogue (what happens to each result v at C[row,col]):
//   0 store   C = v                                  (plain product, tests and gradients)
//   1 act     C = act_forward(v)                     (hidden layer forward, activation.wgsl's
//                                                     ACT; GELU also keeps AUX_OUT = v, its
//                                                     input, for the backward pass)
//   2 act-grad C = act_backward(v, AUX)              (input gradient through the activation
//                                                     below: AUX = its output a; GELU reads
//                                                     its input from AUX_OUT instead)
//   3 update  C = step(old, v)                       (weight gradient fused with the optimizer
//                                                     step of optimizer.wgsl, its state in OPT_M
//                                                     and OPT_V: `old` = the weights before the
//                                                     step, load_old of the layout: AUX, or C
//                                                     itself where C is updated in place)
//   4 sq-err  d = v - AUX; C = s*d; AUX_OUT = d*d    (output layer fused with a squared-error
//                                                     loss and its gradient: AUX = y, s = 2 for
//                                                     sse, 1 for half-sse, 2/N for mse)
//   5 abs-err d = v - AUX; C = s*sign(d); AUX_OUT = |d|  (the same for L1: s = 1/N)
//   6 logits  AUX_OUT = v                            (output layer of a cross-entropy net: the
//                                                     logits, for cross_entropy.wgsl, which
//                                                     writes the gradient C; C is not written)
// `params.scalar` is s for the two error modes (the update's rate and hyperparameters are the
// model's, from its step counters: optimizer.wgsl). With BIAS (forward products only),
// the layer's bias is added to v first, on the real rows: the padding rows stay zero. An
// activation that does not map 0 to 0 (sigmoid) is masked to the real rows and columns
// (params.rows, params.cols), so that the padding stays zero there too.
//
// Bands: a dispatch computes the rows row0..row_end of C (all of them, unless the host split a
// product whose per-element buffers exceed the adapter's storage-buffer limits). AUX_OUT and the
// optimizer's state then hold only the band: element (row, c4) is at (row - row0) * n/4 + c4.
//
// A shared layer's weight gradient is summed over its uses in AUX_OUT (same layout), with store
// or update: ACC_IN adds the sum so far to v first (v = AUX_OUT + v), ACC_OUT writes v to the
// sum and stops there (C is not written: more uses follow, and the step waits for the last).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override MODE: u32 = MODE_STORE;
override BIAS: bool = false;
override ACC_IN: bool = false;
override ACC_OUT: bool = false;

struct Params {
    m: u32,  // padded: multiples of 4
    n: u32,
    k: u32,
    scalar: f32,  // the loss gradient's factor (error modes)
    rows: u32,    // real (unpadded) rows of C
    row0: u32,    // this dispatch computes rows row0..row_end of C (a band: see below)
    row_end: u32,
    splits: u32,  // split-K (layout/buffer/matmul.wgsl): the number of K ranges...
    k_split: u32, // ...and the depth of each (a multiple of 4)
    cols: u32,    // real (unpadded) columns of C
    // Models (a sweep's, in one dispatch: workgroup_id.z, or z / splits for split-K): from one
    // model's matrix to the next in A, in B, in C, in AUX (vec4 in the buffer layout, texel rows
    // in the texels layout: the layout's c_vec4_base turns C's into vec4 for AUX_OUT and the
    // optimizer's state), the vec4 in the bias; and the words between their step counters. 0
    // where every model binds the same data (a lone run, and data shared by a sweep's models).
    sa: u32,
    sb: u32,
    sc: u32,
    saux: u32,
    sbias: u32,
    scount: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// Where this invocation's model starts in each binding (set_model).
var<private> base_a: u32;
var<private> base_b: u32;
var<private> base_c: u32;
var<private> base_aux: u32;
var<private> base_bias: u32;

fn set_model(model: u32) {
    base_a = model * params.sa;
    base_b = model * params.sb;
    base_c = model * params.sc;
    base_aux = model * params.saux;
    base_bias = model * params.sbias;
    opt_base = c_vec4_base();
    count_base = model * params.scount;
}
// Bindings 1-4 (A, B, C, AUX): the layout's prelude.
@group(0) @binding(5) var<storage, read_write> aux_out: array<vec4<f32>>;
// The layer's bias, n/4 vec4 (zero-padded), read when BIAS.
@group(0) @binding(6) var<storage, read> bias: array<vec4<f32>>;
// Bindings 7-8: the optimizer's state of the weights being updated (MODE 3), in the layout of
// aux_out, declared in optimizer.wgsl.

// The 4x4 block of op(A) at rows r..r+3, depth k..k+3, as a matrix whose column kk is
// A[r..r+3, k+kk]. A block past the last row is read from the last one and never stored.
fn load_a(r: u32, k: u32) -> mat4x4<f32> {
    let rr = min(r, params.m - 4u);
    if (TRANS_A) {
        // stored [K, M]: row k+kk of memory is column k+kk of op(A)
        let q = rr / 4u;
        return mat4x4<f32>(texel_a(q, k), texel_a(q, k + 1u), texel_a(q, k + 2u), texel_a(q, k + 3u));
    }
    // stored [M, K]: row r+i of memory holds A[r+i, k..k+3], a row of the block
    let q = k / 4u;
    return transpose(mat4x4<f32>(texel_a(q, rr), texel_a(q, rr + 1u), texel_a(q, rr + 2u), texel_a(q, rr + 3u)));
}

// The 4x4 block of op(B) at depth k..k+3, columns c0..c0+3, as a matrix whose column j is
// B[k..k+3, c0+j]. A block past the last column is read from the last one and never stored.
fn load_b(k: u32, c0: u32) -> mat4x4<f32> {
    let cc = min(c0, params.n - 4u);
    if (TRANS_B) {
        // stored [N, K]: row c0+j of memory holds B[k..k+3, c0+j], a column of the block
        let q = k / 4u;
        return mat4x4<f32>(texel_b(q, cc), texel_b(q, cc + 1u), texel_b(q, cc + 2u), texel_b(q, cc + 3u));
    }
    // stored [K, N]: row k+kk of memory holds B[k+kk, c0..c0+3], a row of the block
    let q = cc / 4u;
    return transpose(mat4x4<f32>(texel_b(q, k), texel_b(q, k + 1u), texel_b(q, k + 2u), texel_b(q, k + 3u)));
}

// params.k, computed so that the compiler cannot treat it as a uniform value: Mesa's gallium
// drivers (lavapipe) inline uniforms that bound loops and compile a variant per value (see
// bias_update.wgsl). a_extent() is at least K (A holds M·K elements, M >= 4), so the min changes
// nothing.
fn k_end() -> u32 {
    return min(params.k, a_extent());
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
fn epilogue(row: u32, c4: u32, product: vec4<f32>) {
    if (row >= params.row_end || c4 >= params.n / 4u) {
        return;
    }
    // The element's index in the band (the optimizer's state), and in the model's AUX_OUT.
    let e = (row - params.row0) * (params.n / 4u) + c4;
    let i = opt_base + e;
    var v = product;
    if (BIAS && row < params.rows) {
        v += bias[base_bias + c4];
    }
    if (ACC_IN) {
        v = aux_out[i] + v;
    }
    if (ACC_OUT) {
        aux_out[i] = v;
        return;
    }
    switch MODE {
        case MODE_ACTIVATE: {
            if (ACT == ACT_GELU) {
                aux_out[i] = v;
            }
            var a = act_forward(v);
            if (ACT == ACT_SIGMOID) {
                let col = vec4<u32>(4u * c4) + vec4<u32>(0u, 1u, 2u, 3u);
                let real = (col < vec4<u32>(params.cols)) & vec4<bool>(row < params.rows);
                a = select(vec4<f32>(0.0), a, real);
            }
            store_c(c4, row, a);
        }
        case MODE_ACTIVATION_GRAD: {
            if (ACT == ACT_GELU) {
                store_c(c4, row, act_backward(v, aux_out[i]));
            } else {
                store_c(c4, row, act_backward(v, load_aux(c4, row)));
            }
        }
        case MODE_UPDATE: {
            store_c(c4, row, optimizer_apply(load_old(c4, row), v, e));
        }
        case MODE_SQUARED_ERROR: {
            let d = v - load_aux(c4, row);
            store_c(c4, row, params.scalar * d);
            aux_out[i] = d * d;
        }
        case MODE_ABS_ERROR: {
            let d = v - load_aux(c4, row);
            store_c(c4, row, params.scalar * sign(d));
            aux_out[i] = abs(d);
        }
        case MODE_LOGITS: {
            aux_out[i] = v;
        }
        default: { store_c(c4, row, v); }
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

// 4x4 results per invocation (one block), 8x8 invocations per workgroup: a 32x32 tile of C. The
// most invocations per product, for GPUs with many cores and small products.
@compute @workgroup_size(8, 8)
fn matmul_4x4(@builtin(global_invocation_id) gid: vec3<u32>) {
    set_model(gid.z);
    let r = params.row0 + gid.y * 4u;
    let c0 = gid.x * 4u;
    if (r >= params.row_end || c0 >= params.n) {
        return;
    }
    var acc = mat4x4<f32>();
    for (var k = 0u; k < k_end(); k += 4u) {
        acc = mac(acc, load_a(r, k), load_b(k, c0));
    }
    store(r, c0, acc);
}

// 8x8 results per invocation, 8x8 invocations per workgroup: a 64x64 tile of C.
@compute @workgroup_size(8, 8)
fn matmul_8x8(@builtin(global_invocation_id) gid: vec3<u32>) {
    set_model(gid.z);
    let r = params.row0 + gid.y * 8u;
    let c0 = gid.x * 8u;
    if (r >= params.row_end || c0 >= params.n) {
        return;
    }
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    for (var k = 0u; k < k_end(); k += 4u) {
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

// The same product with a 16x16 block per invocation (sixteen 4x4 blocks: 32 texel fetches per
// 1024 multiply-adds, half the fetches per multiply-add of `matmul_8x8`) and 16x1 invocations
// per workgroup: a 16x256 tile of C. Meant for CPU implementations (lavapipe), where a fetch costs
// more than keeping many accumulators; GPUs would run out of registers. lavapipe runs the
// invocations of a workgroup 8 consecutive `x` at a time as SIMD lanes, so the workgroup is wide
// in x (a 4x4 workgroup left half of every lane batch idle).
// (Generated pattern: the same lines as `matmul_8x8`, written out for each block.)
@compute @workgroup_size(16, 1)
fn matmul_16x16(@builtin(global_invocation_id) gid: vec3<u32>) {
    set_model(gid.z);
    let r = params.row0 + gid.y * 16u;
    let c0 = gid.x * 16u;
    if (r >= params.row_end || c0 >= params.n) {
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
    for (var k = 0u; k < k_end(); k += 4u) {
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

// A 64x64 tile of C per workgroup of 16x16 invocations, each computing one 4x4 block, with the
// tile's operands staged in workgroup memory: per step of 16 in K, 128 of the 256 invocations load
// one 4x4 block each (64 of A, 64 of B: every element of the step once), and after a barrier every
// invocation multiplies its row of A-blocks by its column of B-blocks from workgroup memory. Global
// loads per multiply-add fall 16-fold against matmul_4x4: the kernel for big products on GPUs. The
// barriers need uniform control flow, so no invocation returns early; what lies past M, N or K is
// loaded clamped (never stored) or as zeros.
const TILE_K: u32 = 16u;
var<workgroup> tile_a: array<mat4x4<f32>, 64>;  // [16 row blocks][4 k blocks]
var<workgroup> tile_b: array<mat4x4<f32>, 64>;  // [4 k blocks][16 column blocks]

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    set_model(wg.z);
    let r_tile = params.row0 + wg.y * 64u;
    let c_tile = wg.x * 64u;
    let kend = k_end();
    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < kend; k0 += TILE_K) {
        if (li < 64u) {
            // A block (row block li / 4, k block li % 4)
            let k = k0 + 4u * (li % 4u);
            var blk = mat4x4<f32>();
            if (k < kend) {
                blk = load_a(r_tile + 4u * (li / 4u), k);
            }
            tile_a[li] = blk;
        } else if (li < 128u) {
            // B block (k block j / 16, column block j % 16)
            let j = li - 64u;
            let k = k0 + 4u * (j / 16u);
            var blk = mat4x4<f32>();
            if (k < kend) {
                blk = load_b(k, c_tile + 4u * (j % 16u));
            }
            tile_b[j] = blk;
        }
        workgroupBarrier();
        for (var kb = 0u; kb < 4u; kb++) {
            acc = mac(acc, tile_a[lid.y * 4u + kb], tile_b[kb * 16u + lid.x]);
        }
        workgroupBarrier();
    }
    let r = r_tile + lid.y * 4u;
    let c0 = c_tile + lid.x * 4u;
    if (r < params.row_end && c0 < params.n) {
        store(r, c0, acc);
    }
}

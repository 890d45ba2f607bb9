// The reference row of `gpu-train bench`: the textbook matrix product, one output element per
// invocation, row-major storage buffers, no tiling, no blocking, no epilogue.
//
//   C[M,N] = A[M,K] · B[K,N]
//
// It is what the tuned kernels of matmul.wgsl are measured against (the speed target is stated
// as a multiple of this kernel's GFLOP/s on the same adapter in the same run), and it is checked
// against the CPU like every other kernel. Training never uses it.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= params.m || col >= params.n) {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < params.k; i += 1u) {
        acc = fma(a[row * params.k + i], b[i * params.n + col], acc);
    }
    c[row * params.n + col] = acc;
}

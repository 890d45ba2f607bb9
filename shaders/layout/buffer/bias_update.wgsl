// bias_update.wgsl's output gradient g in the `buffer` layout (see layout/buffer/matmul.wgsl).

@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>;

fn load_g(c4: u32, row: u32) -> vec4<f32> {
    return g[base_g + row * params.cols4 + c4];
}

// The rows g has (at least the batch's; every model's, where they are many).
fn g_rows() -> u32 {
    return arrayLength(&g) / params.cols4;
}

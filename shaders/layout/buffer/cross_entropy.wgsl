// cross_entropy.wgsl's targets and gradient in the `buffer` layout: row-major vec4 storage buffers
// (see layout/buffer/matmul.wgsl), bound from the band's first row where the batch is banded.

@group(0) @binding(4) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> grad: array<vec4<f32>>;

fn load_y(c4: u32, row: u32) -> vec4<f32> {
    return y[base_y + row * (params.cols_padded / 4u) + c4];
}

fn store_grad(c4: u32, row: u32, v: vec4<f32>) {
    grad[base_values / 4u + row * (params.cols_padded / 4u) + c4] = v;
}

// gather.wgsl's dataset and batch in the `buffer` layout: X ([rows, d0]), Y ([rows, dL]), x and y
// as row-major vec4 storage buffers (see layout/buffer/matmul.wgsl).

@group(0) @binding(1) var<storage, read> data_x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> data_y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

fn load_data_x(c4: u32, src: u32) -> vec4<f32> {
    return data_x[src * params.x_cols4 + c4];
}

fn load_data_y(c4: u32, src: u32) -> vec4<f32> {
    return data_y[src * params.y_cols4 + c4];
}

fn store_x(c4: u32, row: u32, v: vec4<f32>) {
    x[(base_row + row) * params.x_cols4 + c4] = v;
}

fn store_y(c4: u32, row: u32, v: vec4<f32>) {
    y[(base_row + row) * params.y_cols4 + c4] = v;
}

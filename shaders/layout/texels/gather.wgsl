// gather.wgsl's dataset and batch in the `texels` layout: the dataset X ([rows, d0]) and Y
// ([rows, dL]) as rgba32float 2D-array textures, `layer_rows` rows per layer (so that a dataset
// may have more rows than a texture may be high), x and y as matrix textures (see
// layout/texels/matmul.wgsl); a sweep's models' x and y stacked down them, from base_row, and
// their datasets one after the other in the array (src counts from the first).

@group(0) @binding(1) var data_x: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var data_y: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(3) var x: texture_storage_2d<rgba32float, write>;
@group(0) @binding(4) var y: texture_storage_2d<rgba32float, write>;

fn load_data_x(c4: u32, src: u32) -> vec4<f32> {
    return textureLoad(data_x, vec2<u32>(c4, src % params.layer_rows), src / params.layer_rows);
}

fn load_data_y(c4: u32, src: u32) -> vec4<f32> {
    return textureLoad(data_y, vec2<u32>(c4, src % params.layer_rows), src / params.layer_rows);
}

fn store_x(c4: u32, row: u32, v: vec4<f32>) {
    textureStore(x, vec2<u32>(c4, base_row + row), v);
}

fn store_y(c4: u32, row: u32, v: vec4<f32>) {
    textureStore(y, vec2<u32>(c4, base_row + row), v);
}

// cross_entropy.wgsl's targets and gradient in the `texels` layout: matrix textures (see
// layout/texels/matmul.wgsl), texel (c4, row) holding columns 4*c4 .. 4*c4+3 of row `row`.

@group(0) @binding(4) var y: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var grad: texture_storage_2d<rgba32float, write>;

fn load_y(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(y, vec2<u32>(c4, row));
}

fn store_grad(c4: u32, row: u32, v: vec4<f32>) {
    textureStore(grad, vec2<u32>(c4, row), v);
}

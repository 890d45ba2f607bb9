// cross_entropy.wgsl's targets and gradient in the `texels` layout: matrix textures (see
// layout/texels/matmul.wgsl), texel (c4, row) holding columns 4*c4 .. 4*c4+3 of row `row`. A
// sweep's models are stacked down each texture: y base_y texel rows down (0 where they share one),
// the gradient as far down as the model's logits are into theirs (base_values / cols_padded).

@group(0) @binding(4) var y: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var grad: texture_storage_2d<rgba32float, write>;

fn load_y(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(y, vec2<u32>(c4, base_y + row));
}

fn store_grad(c4: u32, row: u32, v: vec4<f32>) {
    textureStore(grad, vec2<u32>(c4, base_values / params.cols_padded + row), v);
}

// bias_update.wgsl's output gradient g in the `texels` layout (see layout/texels/matmul.wgsl): a
// sweep's models stacked down the texture, this model's g base_g texel rows down.

@group(0) @binding(1) var g: texture_storage_2d<rgba32float, read>;

fn load_g(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(g, vec2<u32>(c4, base_g + row));
}

// The rows g has (at least the batch's; every model's where they are stacked).
fn g_rows() -> u32 {
    return textureDimensions(g).y;
}

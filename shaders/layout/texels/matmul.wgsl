// matmul.wgsl's matrices in the `texels` layout: rgba32float storage textures, texel (q, row)
// holding elements 4q..4q+3 of row `row`. Put in front of matmul.wgsl (module-scope order does not
// matter in WGSL: `params` and the overrides are declared there). A sweep's models are stacked down
// each texture: the model's matrix starts base_a (base_b, base_c, base_aux) texel rows down.
//
// The fast layout of CPU implementations (lavapipe, SwiftShader): a texel fetch there is a
// branch-free vector gather. A kernel cannot read and write one texture, so the weight update
// (MODE 3) reads the weights before the step from AUX and writes C, the other texture of the pair.
// (One function per texture rather than one taking the texture: GLSL, which the GL backend
// translates to, allows no image as a function parameter.)

@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var b: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var c: texture_storage_2d<rgba32float, write>;
@group(0) @binding(4) var aux: texture_storage_2d<rgba32float, read>;

fn texel_a(q: u32, row: u32) -> vec4<f32> {
    return textureLoad(a, vec2<u32>(q, base_a + row));
}

fn texel_b(q: u32, row: u32) -> vec4<f32> {
    return textureLoad(b, vec2<u32>(q, base_b + row));
}

// AUX at C[row, 4*c4..4*c4+3] (y for the error modes, the activation for the mask).
fn load_aux(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(aux, vec2<u32>(c4, base_aux + row));
}

// The parameters before the optimizer step, at C[row, 4*c4..]: the texture the epoch read.
fn load_old(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(aux, vec2<u32>(c4, base_aux + row));
}

fn store_c(c4: u32, row: u32, v: vec4<f32>) {
    textureStore(c, vec2<u32>(c4, base_c + row), v);
}

// Where this invocation's model starts in AUX_OUT and the optimizer's state (buffers), in vec4:
// its rows of C before it, n / 4 vec4 each.
fn c_vec4_base() -> u32 {
    return base_c * (params.n / 4u);
}

// At least K, from A's size: see k_end in matmul.wgsl.
fn a_extent() -> u32 {
    let d = textureDimensions(a);
    return 4u * max(d.x, d.y);
}

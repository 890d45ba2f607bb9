// The rows of one mini-batch, gathered from the dataset resident on the GPU: x[r] = X[index[r]]
// and y[r] = Y[index[r]] for the batch's rows, zeros below them (a short last batch).
//
// The dataset X ([rows, d0]) and Y ([rows, dL]) and the batch x and y are in the layout of
// matmul.wgsl (columns zero-padded to a multiple of 4), declared with their access functions by
// the layout's prelude shaders/layout/<layout>/gather.wgsl (in the texels layout the dataset is a
// 2D-array texture of `layer_rows` rows per layer, so that it may have more rows than a texture
// may be high). The host uploads the order of the rows once per submission, `batch`
// entries per step; the step within the submission is state[0] (advanced by loss_reduce.wgsl), so
// one recorded dispatch serves every step. Many models (a sweep's) in one dispatch: workgroup z
// gathers model z's batch, by its own rows and step, from its dataset (or the one they share).

struct Params {
    rows: u32,        // real rows of this step's batch
    batch: u32,       // index entries per step
    padded_rows: u32, // rows of the batch textures (a multiple of 4)
    layer_rows: u32,  // dataset rows per texture layer
    x_cols4: u32,     // texels per row of x
    y_cols4: u32,     // texels per row of y
    // Models (a sweep's, in one dispatch: workgroup_id.z): the entries between one model's rows
    // and the next in `index`, the words between their step counters, and the rows between one
    // model's dataset and the next (0 where they share one); 0 for a lone run.
    sindex: u32,
    sstate: u32,
    sdata: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Bindings 1-4 (data_x, data_y, x, y): the layout's prelude.
@group(0) @binding(5) var<storage, read> index: array<u32>;
@group(0) @binding(6) var<storage, read> state: array<u32>;

// Where this invocation's model's batch starts in x and y, in padded rows.
var<private> base_row: u32;

@compute @workgroup_size(64, 1)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    let r = gid.y;
    let model = gid.z;
    base_row = model * params.padded_rows;
    if (r >= params.padded_rows) {
        return;
    }
    let real = r < params.rows;
    var src = 0u;
    if (real) {
        src = model * params.sdata + index[model * params.sindex + state[model * params.sstate] * params.batch + r];
    }
    if (c4 < params.x_cols4) {
        var v = vec4<f32>(0.0);
        if (real) {
            v = load_data_x(c4, src);
        }
        store_x(c4, r, v);
    }
    if (c4 < params.y_cols4) {
        var v = vec4<f32>(0.0);
        if (real) {
            v = load_data_y(c4, src);
        }
        store_y(c4, r, v);
    }
}

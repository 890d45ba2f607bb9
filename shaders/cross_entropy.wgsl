// Softmax cross-entropy of the output layer, its gradient and its loss, in the one dispatch that
// reduces the loss (no extra dispatch against the squared-error losses): the output layer's
// product (matmul.wgsl MODE 6) wrote the logits z to `values` ([rows, cols] padded to
// cols_padded, from this band's first row); here one invocation per row, rows lid, lid + 256, ...
// in order, computes
//   m = max_j z_j, s = sum_j exp(z_j - m), ys = sum_j y_j,
//   the row's loss sum_j y_j * ((m - z_j) + log(s))   (every term >= 0: no cancellation),
//   the gradient g_j = (exp(z_j - m) / s * ys - y_j) * coef   (softmax - y for a distribution y)
// into `grad` (zeros in the padding columns and in the rows from `rows` to the next multiple of
// 4, which the backward products read), with the CPU's `cross_entropy` operations; then sums the
// rows' losses as loss_reduce sums its values (the invocation of row r adds it in increasing r,
// then the halving tree: reduce_finish), times params.scale (1/rows, or 1 for a band's partial
// sum).
//
// Put after loss_reduce.wgsl (params, values, history, state, reduce_finish) and the layout's
// prelude (y, grad: shaders/layout/<layout>/cross_entropy.wgsl).

@compute @workgroup_size(256)
fn cross_entropy(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    set_model(wg.z);
    let cols = params.cols;
    let cp = params.cols_padded;
    let c4n = cp / 4u;
    // The bounds in a form the compiler cannot treat as uniform values (see bias_update.wgsl);
    // values holds at least the padded rows, so the min changes nothing.
    let rows = min(params.len / cols, arrayLength(&values) / cp);
    let rows4 = min((rows + 3u) & ~3u, arrayLength(&values) / cp);
    var s = 0.0;
    for (var r = lid; r < rows4; r += WIDTH) {
        if (r >= rows) {
            for (var c4 = 0u; c4 < c4n; c4++) {
                store_grad(c4, r, vec4<f32>(0.0));
            }
            continue;
        }
        let base = base_values + r * cp;
        var m = values[base];
        for (var j = 1u; j < cols; j++) {
            m = max(m, values[base + j]);
        }
        var se = 0.0;
        var ys = 0.0;
        for (var c4 = 0u; c4 < c4n; c4++) {
            let yv = load_y(c4, r);
            for (var k = 0u; k < 4u; k++) {
                let j = 4u * c4 + k;
                if (j < cols) {
                    se += exp(values[base + j] - m);
                    ys += yv[k];
                }
            }
        }
        let ls = log(se);
        var l = 0.0;
        for (var c4 = 0u; c4 < c4n; c4++) {
            let yv = load_y(c4, r);
            var gv = vec4<f32>(0.0);
            for (var k = 0u; k < 4u; k++) {
                let j = 4u * c4 + k;
                if (j < cols) {
                    let z = values[base + j];
                    l += yv[k] * ((m - z) + ls);
                    gv[k] = (exp(z - m) / se * ys - yv[k]) * params.coef;
                }
            }
            store_grad(c4, r, gv);
        }
        s += l;
    }
    reduce_finish(lid, s);
}

// Deterministic sum of the per-element losses into the history buffer (times the loss's scale),
// and the epoch counter.
//
// state[0] is the epoch index within the current chunk (reset by the host before each chunk);
// with ADVANCE (training), state[1] is the optimizer's step t and state[2], state[3] hold the bits
// of beta1^t and beta2^t, advanced here once per step by f32 multiplication with beta1 and beta2
// (state[6] and state[7]; as the CPU's `OptCounters`), before that step's updates read them; t is also copied to state[4] and
// state[SHARED + 4], the run's step (a shared layer's updates see the slot at SHARED, whose own t
// counts only the steps that use it), and the step's learning rate from the schedule
// (schedule.wgsl, put in front of this file) goes to state[5] and state[SHARED + 5] for the
// updates to read: computed here once per step, from the schedule's words at state[8..14] (kind,
// its two parameters, the warm-up's two, the base rate), which the host writes once, as it writes
// state[16..20] for the updates (optimizer.wgsl: mu or beta1, beta2, eps, weight decay). The
// shared slot is laid out alike.
//
// Many models (a sweep's) in one dispatch: workgroup z sums model z's values into its history,
// with its state, each `params.s...` elements after the previous model's.
//
// `values` is a [rows, cols] matrix stored with its columns padded to `cols_padded` (see
// matmul.wgsl); element i of the unpadded row-major order is summed by invocation i mod 256, in
// increasing i, then a halving tree adds the 256 partial sums. No atomics, so the same inputs
// always give the same bits, and the CPU path's `loss_reduce` follows the same order.
//
// The loss of this epoch goes to history[state[0]], then the index moves on.
//
// With ADVANCE_SHARED (an epoch that uses the shared layer of a dynamic-depth net, with an
// optimizer that counts steps), state[SHARED + 1 .. SHARED + 3] are that layer's own step t and
// powers, advanced the same way: the layer has no step in epochs that do not use it. The host
// binds them to the layer's updates at byte offset 4 * SHARED.

// Without COUNT, the sum goes to history[state[0]] and nothing advances: a band's partial sum of
// a batch whose losses span several buffers (the buffer layout past one storage binding); the
// host binds each band its own slot and sums the slots with a last, counting, dispatch.
override COUNT: bool = true;
override ADVANCE: bool = false;
override ADVANCE_SHARED: bool = false;
const SHARED: u32 = 64u;

struct Params {
    len: u32,          // rows * cols
    cols: u32,
    cols_padded: u32,
    scale: f32,        // the loss is scale * the sum (1 for sse, 1/N for means, 1/2 for half-sse)
    coef: f32,         // cross_entropy.wgsl: the gradient's factor (1/rows of the whole batch)
    // Models (a sweep's, in one dispatch: workgroup_id.z): the elements between one model's
    // values (and cross_entropy's grad, as vec4: / 4) and the next, its history and its state;
    // 0 for a lone run.
    svalues: u32,
    shistory: u32,
    sstate: u32,
    sy: u32,           // cross_entropy.wgsl: between one model's y and the next, vec4 or texel rows (0: shared)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> history: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<u32>;

const WIDTH: u32 = 256u;

var<workgroup> partial: array<f32, 256>;

// Where this workgroup's model starts in values, history and state (set_model).
var<private> base_values: u32;
var<private> base_history: u32;
var<private> base_state: u32;
var<private> base_y: u32;

fn set_model(model: u32) {
    base_y = model * params.sy;
    base_values = model * params.svalues;
    base_history = model * params.shistory;
    base_state = model * params.sstate;
}

@compute @workgroup_size(256)
fn loss_reduce(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    set_model(wg.z);
    var s = 0.0;
    // The bound in a form the compiler cannot treat as a uniform value (see bias_update.wgsl);
    // values holds at least len elements (padded), so the min changes nothing.
    let len = min(params.len, arrayLength(&values));
    for (var i = lid; i < len; i += WIDTH) {
        s += values[base_values + (i / params.cols) * params.cols_padded + i % params.cols];
    }
    reduce_finish(lid, s);
}

// The halving tree over the invocations' partial sums `s`, the loss into the history, and the
// counters: the end of loss_reduce and of cross_entropy.wgsl (which this file is put in front
// of).
fn reduce_finish(lid: u32, s: f32) {
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WIDTH / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let st = base_state;
        let epoch = state[st];
        history[base_history + epoch] = partial[0] * params.scale;
        if (!COUNT) {
            return;
        }
        state[st] = epoch + 1u;
        if (ADVANCE) {
            let t = saturating_inc(state[st + 1u]);
            state[st + 1u] = t;
            state[st + 4u] = t;
            state[st + SHARED + 4u] = t;
            let lr = scheduled_lr(
                bitcast<f32>(state[st + 13u]),
                t - 1u,
                state[st + 8u],
                state[st + 9u],
                bitcast<f32>(state[st + 10u]),
                state[st + 11u],
                bitcast<f32>(state[st + 12u]),
            );
            state[st + 5u] = bitcast<u32>(lr);
            state[st + SHARED + 5u] = bitcast<u32>(lr);
            advance_powers(st);
        }
        if (ADVANCE_SHARED) {
            state[st + SHARED + 1u] = saturating_inc(state[st + SHARED + 1u]);
            advance_powers(st + SHARED);
        }
    }
}

// beta1^t and beta2^t of the counters slot at `at` one step on, by the slot's beta1 and beta2.
fn advance_powers(at: u32) {
    let beta1 = bitcast<f32>(state[at + 6u]);
    let beta2 = bitcast<f32>(state[at + 7u]);
    state[at + 2u] = bitcast<u32>(bitcast<f32>(state[at + 2u]) * beta1);
    state[at + 3u] = bitcast<u32>(bitcast<f32>(state[at + 3u]) * beta2);
}

// t + 1, held at 2^32 - 1 (as `OptCounters::advance`): a run past 2^32 steps keeps the rate its
// schedule has there, rather than starting the schedule over.
fn saturating_inc(t: u32) -> u32 {
    return select(t + 1u, t, t == 0xffffffffu);
}

// The codes the kernels switch on, by name. Their one source on the Rust side is src/codes.rs;
// a test there checks every constant here against it by naga reflection, so the host and the
// shaders cannot drift apart.

// ACT: the activation (activation.wgsl).
const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_LEAKY_RELU: u32 = 2u;
const ACT_TANH: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;
const ACT_GELU: u32 = 5u;

// MODE: the matmul's epilogue (matmul.wgsl).
const MODE_STORE: u32 = 0u;
const MODE_ACTIVATE: u32 = 1u;
const MODE_ACTIVATION_GRAD: u32 = 2u;
const MODE_UPDATE: u32 = 3u;
const MODE_SQUARED_ERROR: u32 = 4u;
const MODE_ABS_ERROR: u32 = 5u;
const MODE_LOGITS: u32 = 6u;

// OPT: the optimizer step (optimizer.wgsl).
const OPT_SGD: u32 = 0u;
const OPT_MOMENTUM: u32 = 1u;
const OPT_NESTEROV: u32 = 2u;
const OPT_ADAM: u32 = 3u;
const OPT_ADAMW: u32 = 4u;

// The learning-rate schedule's kind (schedule.wgsl, word 0 of the schedule's words).
const SCHED_CONSTANT: u32 = 0u;
const SCHED_STEP: u32 = 1u;
const SCHED_COSINE: u32 = 2u;


//! The codes the WGSL kernels switch on (the `ACT`, `MODE` and `OPT` overrides, the schedule's
//! kind), by name: their one source on the Rust side. `shaders/codes.wgsl` declares the same
//! constants for the shaders, and the test below checks the two against each other by naga
//! reflection, so that a code renumbered on one side only fails here, not as a wrong epilogue on
//! a GPU.

/// The activation (`shaders/activation.wgsl`).
pub const ACT_NONE: u32 = 0;
pub const ACT_RELU: u32 = 1;
pub const ACT_LEAKY_RELU: u32 = 2;
pub const ACT_TANH: u32 = 3;
pub const ACT_SIGMOID: u32 = 4;
pub const ACT_GELU: u32 = 5;

/// The matmul's epilogue (`shaders/matmul.wgsl`).
pub const MODE_STORE: u32 = 0;
pub const MODE_ACTIVATE: u32 = 1;
pub const MODE_ACTIVATION_GRAD: u32 = 2;
pub const MODE_UPDATE: u32 = 3;
pub const MODE_SQUARED_ERROR: u32 = 4;
pub const MODE_ABS_ERROR: u32 = 5;
pub const MODE_LOGITS: u32 = 6;

/// The optimizer step (`shaders/optimizer.wgsl`).
pub const OPT_SGD: u32 = 0;
pub const OPT_MOMENTUM: u32 = 1;
pub const OPT_NESTEROV: u32 = 2;
pub const OPT_ADAM: u32 = 3;
pub const OPT_ADAMW: u32 = 4;

/// The learning-rate schedule's kind (`shaders/schedule.wgsl`).
pub const SCHED_CONSTANT: u32 = 0;
pub const SCHED_STEP: u32 = 1;
pub const SCHED_COSINE: u32 = 2;

/// Every code by its WGSL name.
pub const ALL: &[(&str, u32)] = &[
    ("ACT_NONE", ACT_NONE),
    ("ACT_RELU", ACT_RELU),
    ("ACT_LEAKY_RELU", ACT_LEAKY_RELU),
    ("ACT_TANH", ACT_TANH),
    ("ACT_SIGMOID", ACT_SIGMOID),
    ("ACT_GELU", ACT_GELU),
    ("MODE_STORE", MODE_STORE),
    ("MODE_ACTIVATE", MODE_ACTIVATE),
    ("MODE_ACTIVATION_GRAD", MODE_ACTIVATION_GRAD),
    ("MODE_UPDATE", MODE_UPDATE),
    ("MODE_SQUARED_ERROR", MODE_SQUARED_ERROR),
    ("MODE_ABS_ERROR", MODE_ABS_ERROR),
    ("MODE_LOGITS", MODE_LOGITS),
    ("OPT_SGD", OPT_SGD),
    ("OPT_MOMENTUM", OPT_MOMENTUM),
    ("OPT_NESTEROV", OPT_NESTEROV),
    ("OPT_ADAM", OPT_ADAM),
    ("OPT_ADAMW", OPT_ADAMW),
    ("SCHED_CONSTANT", SCHED_CONSTANT),
    ("SCHED_STEP", SCHED_STEP),
    ("SCHED_COSINE", SCHED_COSINE),
];

/// The WGSL of the constants, put in front of every kernel that switches on them.
pub const WGSL: &str = include_str!("../shaders/codes.wgsl");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constant of `shaders/codes.wgsl` equals the Rust one of the same name, and each side
    /// names every code (one added on one side only fails).
    #[test]
    fn wgsl_codes_match_the_rust_ones() {
        let module = naga::front::wgsl::parse_str(WGSL).expect("codes.wgsl parses");
        let mut wgsl: Vec<(String, u32)> = Vec::new();
        for (_, c) in module.constants.iter() {
            let name = c.name.clone().expect("named constant");
            let value = match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v,
                ref e => panic!("{name}: not a u32 literal: {e:?}"),
            };
            wgsl.push((name, value));
        }
        let rust: Vec<(String, u32)> = ALL.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        assert_eq!(
            wgsl, rust,
            "shaders/codes.wgsl against src/codes.rs, in order"
        );
        // Codes of one kind are distinct.
        for kind in ["ACT_", "MODE_", "OPT_", "SCHED_"] {
            let mut v: Vec<u32> = (ALL.iter().filter(|(n, _)| n.starts_with(kind)))
                .map(|&(_, v)| v)
                .collect();
            let n = v.len();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), n, "two {kind} codes share a value");
        }
    }
}

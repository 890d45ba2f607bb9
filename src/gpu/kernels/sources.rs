//! Every shader as the kernels compile it: the bodies in `shaders/` composed with the preludes
//! they need, embedded at compile time.

macro_rules! shader {
    ($path:literal) => {
        include_str!(concat!("../../../shaders/", $path))
    };
}

/// `shaders/codes.wgsl` (the named codes the kernels switch on) is put in front of every kernel
/// that switches on one; `shaders/optimizer.wgsl` and the layout's prelude in front of the
/// kernels that update parameters, `activation.wgsl` in front of the matmul, `schedule.wgsl` in
/// front of the loss reductions (which compute each step's learning rate); the layout's prelude
/// in front of every kernel that touches a matrix.
pub const MATMUL_TEXELS_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("activation.wgsl"),
    shader!("optimizer.wgsl"),
    shader!("layout/texels/matmul.wgsl"),
    shader!("matmul.wgsl")
);
pub const MATMUL_BUFFER_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("activation.wgsl"),
    shader!("optimizer.wgsl"),
    shader!("layout/buffer/matmul.wgsl"),
    shader!("matmul.wgsl")
);
pub const BIAS_UPDATE_TEXELS_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("optimizer.wgsl"),
    shader!("layout/texels/bias_update.wgsl"),
    shader!("bias_update.wgsl")
);
pub const BIAS_UPDATE_BUFFER_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("optimizer.wgsl"),
    shader!("layout/buffer/bias_update.wgsl"),
    shader!("bias_update.wgsl")
);
/// `loss_reduce.wgsl` (its uniform block, bindings and reduction) in front of the layout's
/// prelude and `cross_entropy.wgsl`.
pub const CROSS_ENTROPY_TEXELS_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("schedule.wgsl"),
    shader!("loss_reduce.wgsl"),
    shader!("layout/texels/cross_entropy.wgsl"),
    shader!("cross_entropy.wgsl")
);
pub const CROSS_ENTROPY_BUFFER_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("schedule.wgsl"),
    shader!("loss_reduce.wgsl"),
    shader!("layout/buffer/cross_entropy.wgsl"),
    shader!("cross_entropy.wgsl")
);
pub const GATHER_TEXELS_WGSL: &str =
    concat!(shader!("layout/texels/gather.wgsl"), shader!("gather.wgsl"));
pub const GATHER_BUFFER_WGSL: &str =
    concat!(shader!("layout/buffer/gather.wgsl"), shader!("gather.wgsl"));
pub const MATMUL_NAIVE_WGSL: &str = shader!("matmul_naive.wgsl");
pub const LOSS_REDUCE_WGSL: &str = concat!(
    shader!("codes.wgsl"),
    shader!("schedule.wgsl"),
    shader!("loss_reduce.wgsl")
);

/// Every composed shader source, by name, for the hash of the tuning cache and the reflection
/// test.
pub const ALL_WGSL: [(&str, &str); 10] = [
    ("matmul texels", MATMUL_TEXELS_WGSL),
    ("matmul buffer", MATMUL_BUFFER_WGSL),
    ("bias_update texels", BIAS_UPDATE_TEXELS_WGSL),
    ("bias_update buffer", BIAS_UPDATE_BUFFER_WGSL),
    ("cross_entropy texels", CROSS_ENTROPY_TEXELS_WGSL),
    ("cross_entropy buffer", CROSS_ENTROPY_BUFFER_WGSL),
    ("gather texels", GATHER_TEXELS_WGSL),
    ("gather buffer", GATHER_BUFFER_WGSL),
    ("matmul_naive", MATMUL_NAIVE_WGSL),
    ("loss_reduce", LOSS_REDUCE_WGSL),
];

//! The matmul kernel family (`shaders/matmul.wgsl`): its variants and epilogues, uniform block,
//! bindings and dispatch; `run` runs it on its own for tests, tuning and the bench.

use super::optimizer::COUNTER_MODEL_WORDS;
use super::optimizer::{optimizer_bindings, OptBind};
use super::{Opt, Update};
use crate::codes;
use crate::error::Result;
use crate::gpu::layout::{pad4, Layout};
use crate::gpu::memory::{storage, uniform, Banded, GpuMatrix};
use crate::gpu::record::{bind_group, check_groups, Dispatch};
use crate::gpu::GpuContext;

mod run;
pub use run::{
    run_matmul, run_matmul_models, time_matmul, MatmulInputs, MatmulOutput, ModelInputs,
};

/// The matmul kernel's epilogue, the `MODE` override of `shaders/matmul.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Mode {
    /// `C = v`
    Store = codes::MODE_STORE,
    /// `C = act(v)`, the key's activation (GELU also keeps `AUX_OUT = v`)
    Activate = codes::MODE_ACTIVATE,
    /// `C = v` through the activation below, from its output (AUX) or for GELU its input
    /// (AUX_OUT)
    ActivationGrad = codes::MODE_ACTIVATION_GRAD,
    /// `C = step(AUX, v)`: the optimizer step (`Opt`) of the weights before the step (AUX)
    Update = codes::MODE_UPDATE,
    /// `d = v - AUX; C = s·d; AUX_OUT = d²` (squared-error losses; AUX = y)
    SquaredError = codes::MODE_SQUARED_ERROR,
    /// `d = v - AUX; C = s·sign(d); AUX_OUT = |d|` (L1 loss; AUX = y)
    AbsError = codes::MODE_ABS_ERROR,
    /// `AUX_OUT = v`: the logits of a cross-entropy net, for `cross_entropy.wgsl`
    Logits = codes::MODE_LOGITS,
}

impl Mode {
    /// The output layer's mode for a loss.
    pub fn for_loss(loss: crate::job::Loss) -> Self {
        if loss.is_classification() {
            Mode::Logits
        } else if loss.is_abs() {
            Mode::AbsError
        } else {
            Mode::SquaredError
        }
    }

    /// Whether the mode writes per-element losses (or logits) to AUX_OUT.
    pub fn is_loss(self) -> bool {
        matches!(self, Mode::SquaredError | Mode::AbsError | Mode::Logits)
    }
}

/// Results per invocation of the matmul kernel: the entry point of `shaders/matmul.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Block {
    /// `matmul_4x4`: one 4x4 block per invocation, 8x8 invocations per workgroup (the most
    /// parallelism: GPUs with many cores on small products).
    B4x4,
    /// `matmul_8x8`: 8x8 results per invocation, 8x8 invocations per workgroup (GPUs).
    B8x8,
    /// `matmul_16x16`: 16x16 results per invocation, 4x4 invocations per workgroup (CPU
    /// implementations such as lavapipe, where loads cost far more than registers).
    B16x16,
    /// `matmul_tiled`: a 64x64 tile per workgroup of 16x16 invocations, its operands staged in
    /// workgroup memory 16 deep in K (GPUs, big products).
    Tiled,
    /// `matmul_splitk` + `matmul_splitk_reduce`: K split into ranges computed by separate
    /// workgroups (32x32 tiles), their partial sums added in a fixed order by a second pass that
    /// applies the epilogue (GPUs, skinny products with few tiles; buffer layout only).
    SplitK,
}

/// Workgroups a product should launch on a GPU to keep its cores busy (an H200 has 132 SMs).
pub const MIN_GPU_WORKGROUPS: usize = 64;

/// Products smaller than this many FLOPs stay one plain dispatch on a GPU: they are latency.
pub const SMALL_PRODUCT_FLOPS: f64 = 1e6;

impl Block {
    pub const ALL: [Block; 5] = [
        Block::B4x4,
        Block::B8x8,
        Block::B16x16,
        Block::Tiled,
        Block::SplitK,
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Block::B4x4 => "matmul_4x4",
            Block::B8x8 => "matmul_8x8",
            Block::B16x16 => "matmul_16x16",
            Block::Tiled => "matmul_tiled",
            Block::SplitK => "matmul_splitk",
        }
    }

    /// Whether the variant exists in `layout` (split-K's partial sums need a buffer that one pass
    /// writes and the next reads).
    pub fn supports(self, layout: Layout) -> bool {
        self != Block::SplitK || layout == Layout::Buffer
    }

    /// The variants of `layout`.
    pub fn of_layout(layout: Layout) -> Vec<Block> {
        (Block::ALL.into_iter())
            .filter(|b| b.supports(layout))
            .collect()
    }

    /// Rows and columns of C computed by one workgroup of this variant.
    pub fn tile(self) -> (u32, u32) {
        match self {
            Block::B4x4 | Block::SplitK => (32, 32),
            Block::B8x8 | Block::Tiled => (64, 64),
            Block::B16x16 => (16, 256),
        }
    }

    /// The name `gpu-train tune` and the bench results use: `4x4`, `8x8`, `16x16`, `tiled`,
    /// `splitk`.
    pub fn name(self) -> &'static str {
        self.entry_point().trim_start_matches("matmul_")
    }

    /// Workgroups of C's tiles (one K range) for an `[m, k]·[k, n]` product.
    pub fn tiles(self, (m, n, _): (usize, usize, usize)) -> usize {
        let (tr, tc) = self.tile();
        m.div_ceil(tr as usize) * n.div_ceil(tc as usize)
    }

    /// The untuned choice for a product of `[m, k]·[k, n]` in `layout` on an adapter of type
    /// `device_type` (what runs where `gpu-train tune` has measured nothing for the shape).
    /// On CPU implementations a texel fetch costs more than an accumulator, so big blocks win
    /// once the k loop dominates; small products get 8x8 (measured on lavapipe:
    /// benches/README.md). On a GPU every product of at least [`SMALL_PRODUCT_FLOPS`] launches at
    /// least [`MIN_GPU_WORKGROUPS`] workgroups where it can: the workgroup-tiled kernel where C
    /// has that many 64x64 tiles, else 4x4 blocks (32x32 tiles), else split-K (buffer layout);
    /// smaller products stay one 8x8 dispatch.
    pub fn for_product(
        device_type: wgpu::DeviceType,
        layout: Layout,
        (m, n, k): (usize, usize, usize),
    ) -> Self {
        let dims = (m, n, k);
        if device_type == wgpu::DeviceType::Cpu {
            return if m >= 32 && n >= 32 && k >= 64 {
                Block::B16x16
            } else {
                Block::B8x8
            };
        }
        if (2.0 * (m * n * k) as f64) < SMALL_PRODUCT_FLOPS {
            Block::B8x8
        } else if Block::Tiled.tiles(dims) >= MIN_GPU_WORKGROUPS {
            Block::Tiled
        } else if Block::B4x4.tiles(dims) >= MIN_GPU_WORKGROUPS || !Block::SplitK.supports(layout) {
            Block::B4x4
        } else {
            Block::SplitK
        }
    }

    /// Split-K of a product with padded depth `k`: the number of K ranges, enough for
    /// [`MIN_GPU_WORKGROUPS`] workgroups with C's `tiles`, each range at least 16 deep, and the
    /// depth of each (a multiple of 4).
    pub fn splits(tiles: usize, k: usize) -> (usize, usize) {
        let k4 = k.div_ceil(4).max(1);
        let want = MIN_GPU_WORKGROUPS.div_ceil(tiles.max(1));
        let s = want.clamp(1, (k4 / 4).max(1));
        let k_split = 4 * k4.div_ceil(s);
        (k.div_ceil(k_split), k_split)
    }
}

/// How a product takes part in summing a shared layer's gradient over its uses (the `ACC_IN` and
/// `ACC_OUT` overrides of `shaders/matmul.wgsl` and `shaders/bias_update.wgsl`): the sum so far
/// lives in a storage buffer, the product's AUX_OUT (the bias kernel's ACC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Acc {
    /// Add the sum so far to the result first.
    pub input: bool,
    /// Write the result to the sum and stop there (more uses follow); no output, no step.
    pub output: bool,
}

/// The activation of `Mode::Activate` and `Mode::ActivationGrad` (the `ACT` and `SLOPE`
/// overrides of `shaders/activation.wgsl`); ReLU for the other modes, which ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Act {
    pub code: u32,
    pub slope_bits: u32,
}

impl Act {
    pub fn of(a: crate::job::Activation) -> Self {
        use crate::job::Activation;
        let code = match a {
            Activation::None => codes::ACT_NONE,
            Activation::Relu => codes::ACT_RELU,
            Activation::LeakyRelu(_) => codes::ACT_LEAKY_RELU,
            Activation::Tanh => codes::ACT_TANH,
            Activation::Sigmoid => codes::ACT_SIGMOID,
            Activation::Gelu => codes::ACT_GELU,
        };
        Act {
            code,
            slope_bits: a.slope().to_bits(),
        }
    }
}

impl Default for Act {
    fn default() -> Self {
        Act::of(crate::job::Activation::Relu)
    }
}

/// One compiled variant of the matmul kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub trans_a: bool,
    pub trans_b: bool,
    pub mode: Mode,
    pub block: Block,
    /// Add the layer's bias in the epilogue (forward products only).
    pub bias: bool,
    /// The optimizer step of `Mode::Update` (`Opt::Sgd` for the other modes).
    pub opt: Opt,
    /// The weight decay and learning-rate schedule of `Mode::Update` (none for the others): not
    /// compiled in (the kernel reads them from the step counters), but what a check of the
    /// variant writes there.
    pub update: Update,
    /// Summing a shared layer's gradient (`Mode::Store` and `Mode::Update` only).
    pub acc: Acc,
    /// The activation of the activation modes.
    pub act: Act,
    /// Where the matrices live (the prelude the kernel is compiled with).
    pub layout: Layout,
}

impl MatmulKey {
    /// The key of the compiled pipeline: the step's decay and schedule are read from the step
    /// counters at run time, so variants that differ only there share one.
    pub fn pipeline(self) -> Self {
        MatmulKey {
            update: Update::default(),
            ..self
        }
    }

    /// Whether the variant binds AUX_OUT: the error and logits modes write it, a sum over a
    /// shared layer's uses reads and writes it, and GELU keeps its input there (written forward,
    /// read backward).
    pub fn binds_aux_out(&self) -> bool {
        let gelu = self.act.code == codes::ACT_GELU;
        self.mode.is_loss()
            || self.acc != Acc::default()
            || (gelu && matches!(self.mode, Mode::Activate | Mode::ActivationGrad))
    }

    /// Whether the variant reads AUX: the error modes (y), the activation's gradient (the
    /// output below, but for GELU) and the update of weight pairs (the old weights).
    pub fn reads_aux(&self) -> bool {
        let gelu = self.act.code == codes::ACT_GELU;
        matches!(self.mode, Mode::SquaredError | Mode::AbsError)
            || (self.mode == Mode::ActivationGrad && !gelu)
            || (self.mode == Mode::Update && self.layout.pairs())
    }

    /// How A and B of an `[m, k]·[k, n]` product are stored, `(rows, cols)` each: `[m, k]` or
    /// `[k, m]` for A, `[k, n]` or `[n, k]` for B, by the transposes.
    pub fn stored_shapes(
        &self,
        (m, n, k): (usize, usize, usize),
    ) -> ((usize, usize), (usize, usize)) {
        let a = if self.trans_a { (k, m) } else { (m, k) };
        let b = if self.trans_b { (n, k) } else { (k, n) };
        (a, b)
    }
}

/// The bindings of `shaders/matmul.wgsl` (with its layout prelude and `optimizer.wgsl`) by
/// number: entry `i` of the layouts in `kernels`, `resources[i]` of [`matmul_dispatch`]. Checked
/// against the WGSL by naga reflection (`kernels::tests`).
pub const BINDINGS: &[&str] = &[
    "params",
    "a",
    "b",
    "c",
    "aux",
    "aux_out",
    "bias",
    "opt_state",
    "counters",
];

/// WGSL member names of [`MatmulParams`] and their byte offsets here (checked by reflection).
pub const UNIFORM_FIELDS: &[(&str, usize)] = &[
    ("m", std::mem::offset_of!(MatmulParams, m)),
    ("n", std::mem::offset_of!(MatmulParams, n)),
    ("k", std::mem::offset_of!(MatmulParams, k)),
    ("scalar", std::mem::offset_of!(MatmulParams, scalar)),
    ("rows", std::mem::offset_of!(MatmulParams, rows)),
    ("row0", std::mem::offset_of!(MatmulParams, row0)),
    ("row_end", std::mem::offset_of!(MatmulParams, row_end)),
    ("splits", std::mem::offset_of!(MatmulParams, splits)),
    ("k_split", std::mem::offset_of!(MatmulParams, k_split)),
    ("cols", std::mem::offset_of!(MatmulParams, cols)),
    ("sa", std::mem::offset_of!(MatmulParams, sa)),
    ("sb", std::mem::offset_of!(MatmulParams, sb)),
    ("sc", std::mem::offset_of!(MatmulParams, sc)),
    ("saux", std::mem::offset_of!(MatmulParams, saux)),
    ("sbias", std::mem::offset_of!(MatmulParams, sbias)),
    ("scount", std::mem::offset_of!(MatmulParams, scount)),
];

/// Uniform block of `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    /// The loss gradient's factor for the error modes.
    pub(crate) scalar: f32,
    /// Real (unpadded) rows of C: the bias is added to these only.
    pub(crate) rows: u32,
    /// The band of rows of C this dispatch computes (see [`Banded`]).
    pub(crate) row0: u32,
    pub(crate) row_end: u32,
    /// Split-K: the number of K ranges and the depth of each.
    pub(crate) splits: u32,
    pub(crate) k_split: u32,
    /// Real (unpadded) columns of C: an activation that does not map 0 to 0 is masked to these.
    pub(crate) cols: u32,
    /// Stacked models (one dispatch for a sweep's): vec4 from one model's A, B, C (and AUX_OUT
    /// and the optimizer's state), AUX and bias to the next's, words from its step counters to
    /// the next's; 0 where one copy serves every model.
    pub(crate) sa: u32,
    pub(crate) sb: u32,
    pub(crate) sc: u32,
    pub(crate) saux: u32,
    pub(crate) sbias: u32,
    pub(crate) scount: u32,
}

/// The matrices one matmul dispatch binds.
pub(crate) struct MatmulBind<'a> {
    /// The bands of rows bound, where the matrices are larger than one storage binding.
    pub(crate) windows: Windows,
    pub(crate) a: &'a GpuMatrix,
    pub(crate) b: &'a GpuMatrix,
    pub(crate) c: &'a GpuMatrix,
    pub(crate) aux: Option<&'a GpuMatrix>,
    pub(crate) aux_out: Option<&'a Banded>,
    pub(crate) bias: Option<&'a wgpu::Buffer>,
    /// The optimizer of `Mode::Update` (its step counters: every update binds them).
    pub(crate) opt: Option<OptBind<'a>>,
}

/// Bands of padded rows of the bound matrices, for a product over one band of the batch in the
/// buffer layout (matrices larger than one storage binding): `rows` are C's and AUX's rows, and
/// A's where A is not transposed; `depth` the rows of K, A's where A is transposed and B's where
/// it is not. The product runs on those rows as if they were the whole matrices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Windows {
    pub(crate) rows: Option<(usize, usize)>,
    pub(crate) depth: Option<(usize, usize)>,
}

impl Windows {
    fn of<'a>(m: &'a GpuMatrix, band: Option<(usize, usize)>) -> wgpu::BindingResource<'a> {
        band.map_or_else(|| m.binding(), |b| m.window(b))
    }
}

/// The dispatches of one product: one, or one per band of the per-element buffers it writes
/// (see [`Banded`]).
pub(crate) fn matmul_dispatch(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    scalar: f32,
    bind: MatmulBind<'_>,
) -> Result<Vec<Dispatch>> {
    debug_assert_eq!(key.bias, bind.bias.is_some());
    // An optimizer that keeps state must be given it: the unchecked shader indexes it.
    let given = bind.opt.and_then(|o| o.state).map_or(0, |b| b.copies);
    debug_assert_eq!(key.opt.state_buffers(), given);
    // Summing a gradient needs the sum's buffer, in AUX_OUT.
    debug_assert!(
        key.acc == Acc::default()
            || (matches!(key.mode, Mode::Store | Mode::Update) && bind.aux_out.is_some())
    );
    // Every matrix is in the key's layout; the update reads the old weights from AUX where
    // weights are pairs, from C itself where they are updated in place.
    debug_assert!([bind.a, bind.b, bind.c]
        .iter()
        .chain(bind.aux.as_ref())
        .all(|m| m.layout() == key.layout));
    debug_assert!(
        key.mode != Mode::Update || key.acc.output || bind.aux.is_some() == key.layout.pairs()
    );
    let (rows, cols) = (m, n);
    let shape = format!("{m}x{n}x{k}");
    let (m, n, k) = (pad4(m), pad4(n), pad4(k));
    // Every per-element buffer of the product is banded alike (same rows, columns and limits).
    let banded = (bind.aux_out.into_iter())
        .chain(bind.opt.into_iter().flat_map(|o| o.state))
        .next();
    let bands = banded.map_or(vec![(0, m)], |b| b.bands());
    debug_assert!(
        (bind.aux_out.into_iter())
            .chain(bind.opt.into_iter().flat_map(|o| o.state))
            .all(|b| b.bands() == bands),
        "{:?}: per-element buffers banded unlike",
        key.mode
    );
    let (tile_rows, tile_cols) = key.block.tile();
    let pipeline = ctx.kernels.matmul(&ctx.device, key);
    let split = key.block == Block::SplitK;
    let (splits, k_split) = if split {
        Block::splits(Block::SplitK.tiles((m, n, k)), k)
    } else {
        (1, k)
    };
    let reduce = split.then(|| ctx.kernels.matmul_splitk_reduce(&ctx.device, key));
    let kn = &ctx.kernels;
    let t = |b: bool| if b { "ᵀ" } else { "" };
    let label = format!(
        "matmul {} {}{} {:?}{} A{}·B{} {shape}{}",
        key.layout,
        key.block.name(),
        if split {
            format!("({splits})")
        } else {
            String::new()
        },
        key.mode,
        if key.bias { "+bias" } else { "" },
        t(key.trans_a),
        t(key.trans_b),
        if bands.len() > 1 { " (banded)" } else { "" },
    );
    // A sweep's stacked models: one dispatch for all, model z of the grid (C is every model's).
    let models = bind.c.models.max(1);
    debug_assert!(
        models == 1 || bands.len() == 1,
        "stacked models are not banded"
    );
    let per_model = |stride: u32| if models > 1 { stride } else { 0 };
    let mut out = Vec::new();
    for (band, &(row0, row_end)) in bands.iter().enumerate() {
        let band_rows = row_end - row0;
        let groups = [
            n.div_ceil(tile_cols as usize),
            band_rows.div_ceil(tile_rows as usize),
            splits * models,
        ];
        check_groups(ctx, format!("the {m}x{k}·{k}x{n} product"), groups)?;
        let params = uniform(
            ctx,
            "matmul params",
            &MatmulParams {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                scalar,
                rows: rows as u32,
                row0: row0 as u32,
                row_end: row_end as u32,
                splits: splits as u32,
                k_split: k_split as u32,
                cols: cols as u32,
                sa: bind.a.model_stride(),
                sb: bind.b.model_stride(),
                sc: bind.c.model_stride(),
                saux: bind.aux.map_or(0, |m| m.model_stride()),
                sbias: per_model((n / 4) as u32),
                scount: per_model(COUNTER_MODEL_WORDS),
            },
        );
        // Split-K's partial sums, `splits` matrices of the band's rows per model: written by the
        // first pass as its C, read by the second as its A.
        let partials = split
            .then(|| {
                let len = models * splits * band_rows * n;
                storage(ctx, "split-K partial sums", len, None)
            })
            .transpose()?;
        let win = bind.windows;
        let a_band = if key.trans_a { win.depth } else { win.rows };
        let b_band = if key.trans_b { None } else { win.depth };
        let resources = vec![
            params.as_entire_binding(),
            Windows::of(bind.a, a_band),
            Windows::of(bind.b, b_band),
            Windows::of(bind.c, win.rows),
            bind.aux
                .map_or_else(|| kn.dummy_matrix(key.layout), |m| Windows::of(m, win.rows)),
            bind.aux_out
                .map_or(&kn.dummy_rw, |b| &b.bufs[band])
                .as_entire_binding(),
            bind.bias.unwrap_or(&kn.dummy_bias).as_entire_binding(),
        ];
        let layout = kn.matmul_layout(key.layout);
        let optimizer = || Some(optimizer_bindings(ctx, bind.opt, band));
        let mut first = resources.clone();
        if let Some(p) = &partials {
            first[3] = p.as_entire_binding();
        }
        out.push(Dispatch {
            label: match split {
                true => format!("{label} [partial sums]"),
                false => label.clone(),
            },
            pipeline: pipeline.clone(),
            bind_group: bind_group(ctx, "matmul", layout, first, optimizer()),
            groups: groups.map(|g| g as u32),
        });
        if let (Some(p), Some(reduce)) = (&partials, &reduce) {
            let mut second = resources;
            second[1] = p.as_entire_binding();
            let groups = [(n / 4).div_ceil(8), band_rows.div_ceil(8), models];
            out.push(Dispatch {
                label: format!("{label} [reduce]"),
                pipeline: reduce.clone(),
                bind_group: bind_group(ctx, "matmul", layout, second, optimizer()),
                groups: groups.map(|g| g as u32),
            });
        }
    }
    Ok(out)
}

/// The override constants of a matmul variant.
pub(crate) fn constants(key: MatmulKey) -> [(&'static str, f64); 9] {
    [
        ("TRANS_A", key.trans_a as u8 as f64),
        ("TRANS_B", key.trans_b as u8 as f64),
        ("MODE", key.mode as u32 as f64),
        ("BIAS", key.bias as u8 as f64),
        ("OPT", key.opt as u32 as f64),
        ("ACC_IN", key.acc.input as u8 as f64),
        ("ACC_OUT", key.acc.output as u8 as f64),
        ("ACT", key.act.code as f64),
        ("SLOPE", f32::from_bits(key.act.slope_bits) as f64),
    ]
}

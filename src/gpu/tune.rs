//! Matmul tuning per adapter: for each product shape, every variant of `shaders/matmul.wgsl`
//! ([`Block::of_layout`]) is checked against the CPU on random inputs, the ones that pass are timed, and
//! the fastest is kept. The choices are cached per adapter and driver in the user's cache
//! directory (`$GPU_TRAIN_CACHE_DIR`, else e.g. `~/.cache/gpu-train`), one JSON file each; training
//! and the bench read them when they open the adapter. A cache that cannot be read, that another
//! version of the kernels or of the tool wrote, or that names another adapter or driver is ignored
//! with a warning: a stale choice can only be slow, never wrong (every variant computes the same
//! product), but it must not be trusted silently.

use super::kernels::{Acc, Act, Block, MatmulKey, Mode, Opt, Update, ALL_WGSL};
use super::layout::Layout;
use super::GpuContext;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::PathBuf;

/// What the cache file says it is.
pub const CACHE_FORMAT: &str = "gpu-train matmul tuning";
/// 2: entries carry their memory layout.
pub const CACHE_VERSION: u32 = 2;

/// The adapter and driver a tuning belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterId {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterId {
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterId {
            name: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            backend: info.backend.to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }
}

/// The normwise check of one product against the CPU: `error` is the largest
/// `|gpu - cpu| / (|A|·|B|)` over the elements, `tolerance` what f32 rounding of two correct
/// products allows (`2·γ_k`, γ_k = k·u/(1 - k·u)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    pub error: f64,
    pub tolerance: f64,
    pub passed: bool,
}

impl Parity {
    /// Compare `got` with `want`, scaled elementwise by `scale` (`|A|·|B|`), for depth `k`.
    pub fn of(got: &[f32], want: &[f32], scale: &[f32], k: usize) -> Self {
        let u = f32::EPSILON as f64 / 2.0;
        let ku = k.max(1) as f64 * u;
        let tolerance = 2.0 * ku / (1.0 - ku);
        let mut error = if got.len() == want.len() {
            0.0f64
        } else {
            f64::INFINITY
        };
        for ((&g, &w), &s) in got.iter().zip(want).zip(scale) {
            let d = (g as f64 - w as f64).abs();
            let e = if d == 0.0 {
                0.0
            } else {
                d / (s as f64).max(f64::MIN_POSITIVE)
            };
            // NaN (an unwritten, poisoned element) fails.
            error = if e.is_nan() {
                f64::INFINITY
            } else {
                error.max(e)
            };
        }
        Parity {
            error,
            tolerance,
            passed: error <= tolerance,
        }
    }
}

/// One variant's result for a shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub block: Block,
    pub parity: Parity,
    /// Seconds per product (median), for the variants that passed.
    pub seconds: Option<f64>,
    /// (max - min) / median of its timings.
    #[serde(default)]
    pub spread: Option<f64>,
}

/// The choice for one product shape (padded dimensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub layout: Layout,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub block: Block,
    pub measured: Vec<Measured>,
}

impl Entry {
    pub fn gflops(&self, seconds: f64) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64 / seconds / 1e9
    }
}

/// The cache file of one adapter and driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    pub format: String,
    pub version: u32,
    pub tool_version: String,
    /// A hash of the kernels' source: a tuning of other kernels is stale.
    pub kernels: String,
    pub adapter: AdapterId,
    pub entries: Vec<Entry>,
    /// The memory layout measured fastest for training on this adapter (what `--layout auto`
    /// takes here instead of the rule), if `gpu-train tune` measured one.
    #[serde(default)]
    pub layout: Option<LayoutChoice>,
}

/// Training steps timed in each layout, and the choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutChoice {
    pub layout: Layout,
    /// The job timed (its layers and batch).
    pub job: String,
    pub measured: Vec<LayoutTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutTime {
    pub layout: Layout,
    /// Seconds per epoch (median of the samples).
    pub seconds: f64,
    /// (max - min) / median of the samples.
    pub spread: f64,
}

type Shape = (Layout, bool, bool, usize, usize, usize);

fn shape_of(
    layout: Layout,
    (trans_a, trans_b): (bool, bool),
    (m, n, k): (usize, usize, usize),
) -> Shape {
    use super::pad4;
    (layout, trans_a, trans_b, pad4(m), pad4(n), pad4(k))
}

impl Entry {
    fn shape(&self) -> Shape {
        let dims = (self.m, self.n, self.k);
        shape_of(self.layout, (self.trans_a, self.trans_b), dims)
    }
}

/// The tuned variants of one adapter, by shape.
#[derive(Debug, Default)]
pub struct Table {
    entries: HashMap<Shape, Block>,
    /// The measured layout choice, if any.
    pub layout: Option<Layout>,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// The hash of the kernels a tuning was measured on.
pub fn kernels_hash() -> String {
    let all: String = ALL_WGSL.iter().map(|(_, src)| *src).collect();
    format!("{:016x}", fnv(all.as_bytes()))
}

/// The cache directory: `$GPU_TRAIN_CACHE_DIR`, else the user's cache directory + `gpu-train`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("GPU_TRAIN_CACHE_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        #[cfg(not(target_arch = "wasm32"))]
        _ => dirs::cache_dir().map(|d| d.join("gpu-train")),
        // The browser has no cache directory: untuned choices there.
        #[cfg(target_arch = "wasm32")]
        _ => None,
    }
}

/// The name of an adapter and driver's tuning, `tune-` and a hash of its identity: the cache
/// file's stem natively, the storage key in the page.
pub fn cache_key(info: &wgpu::AdapterInfo) -> String {
    let id = serde_json::to_string(&AdapterId::of(info)).unwrap_or_default();
    format!("tune-{:016x}", fnv(id.as_bytes()))
}

/// The cache file of an adapter and driver.
pub fn cache_path(info: &wgpu::AdapterInfo) -> Option<PathBuf> {
    cache_dir().map(|d| d.join(format!("{}.json", cache_key(info))))
}

/// Why a cache file cannot be used, if it cannot.
fn stale(file: &CacheFile, id: &AdapterId) -> Option<String> {
    if file.format != CACHE_FORMAT {
        return Some(format!(
            "it is not a tuning cache (format {:?})",
            file.format
        ));
    }
    if file.version != CACHE_VERSION {
        return Some(format!(
            "its version {} is not this tool's {CACHE_VERSION}",
            file.version
        ));
    }
    if file.kernels != kernels_hash() {
        return Some("it was measured on other kernels (another gpu-train build)".into());
    }
    if &file.adapter != id {
        return Some(format!(
            "it is for {} (driver {} {})",
            file.adapter.name, file.adapter.driver, file.adapter.driver_info
        ));
    }
    // No adapter runs a product with a side past 2^31 (and padding one would overflow).
    if let Some(e) =
        (file.entries.iter()).find(|e| [e.m, e.n, e.k].iter().any(|&d| d == 0 || d > 1 << 31))
    {
        return Some(format!(
            "it has an entry of impossible shape {}x{}x{}",
            e.m, e.n, e.k
        ));
    }
    None
}

/// Read the cache file at `path` for adapter `id`: `Ok(None)` if there is none, `Err(reason)` if
/// it exists and cannot be trusted.
pub fn read_cache(
    path: &std::path::Path,
    id: &AdapterId,
) -> std::result::Result<Option<CacheFile>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    parse_cache(&text, id).map(Some)
}

/// [`read_cache`] of a file's text.
pub fn parse_cache(text: &str, id: &AdapterId) -> std::result::Result<CacheFile, String> {
    let file: CacheFile = serde_json::from_str(text).map_err(|e| format!("it is corrupt: {e}"))?;
    match stale(&file, id) {
        Some(why) => Err(why),
        None => Ok(file),
    }
}

impl Table {
    /// The cached tuning of this adapter and driver; empty (with a warning) if the cache is
    /// corrupt or stale, empty and silent if there is none.
    pub fn load(info: &wgpu::AdapterInfo) -> Self {
        let Some(path) = cache_path(info) else {
            return Table::default();
        };
        match read_cache(&path, &AdapterId::of(info)) {
            Ok(Some(file)) => {
                log::info!(
                    "matmul tuning: {} shapes from {}",
                    file.entries.len(),
                    path.display()
                );
                Table::of_file(&file)
            }
            Ok(None) => Table::default(),
            Err(why) => {
                log::warn!(
                    "ignoring the matmul tuning cache {}: {why}; run `gpu-train tune` to \
                     measure again",
                    path.display()
                );
                Table::default()
            }
        }
    }

    /// The choices of a cache file (its variants and its layout).
    pub fn of_file(file: &CacheFile) -> Self {
        Table {
            layout: file.layout.as_ref().map(|c| c.layout),
            ..Table::from_entries(&file.entries)
        }
    }

    pub fn from_entries(entries: &[Entry]) -> Self {
        Table {
            entries: entries.iter().map(|e| (e.shape(), e.block)).collect(),
            layout: None,
        }
    }

    /// The tuned variant of a product in `layout`, if one was measured.
    pub fn get(
        &self,
        layout: Layout,
        transposes: (bool, bool),
        dims: (usize, usize, usize),
    ) -> Option<Block> {
        self.entries
            .get(&shape_of(layout, transposes, dims))
            .copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Choose among `candidates`: each is checked first (`check`), only those that pass are timed
/// (`time`, seconds per product of each sample), and the fastest median is the choice, unless
/// `default` (the untuned choice) passed and the fastest beats it by less than the relative spread
/// of either's samples: a difference within the noise keeps the default, so that choices do not
/// flip between runs. A variant that fails its check can never be chosen, however fast. Fails if
/// none passes.
pub async fn search(
    candidates: &[Block],
    default: Block,
    mut check: impl AsyncFnMut(Block) -> Result<Parity>,
    mut time: impl AsyncFnMut(Block) -> Result<Vec<f64>>,
) -> Result<(Block, Vec<Measured>)> {
    let mut measured = Vec::new();
    for &block in candidates {
        let parity = check(block).await?;
        let (seconds, spread) = if parity.passed {
            let t = time(block).await?;
            let mid = median(&t);
            let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.iter().copied().fold(0.0, f64::max);
            (Some(mid), Some((hi - lo) / mid))
        } else {
            log::warn!(
                "matmul {} failed its check against the CPU (error {:.3e} > {:.3e}): not a \
                 candidate",
                block.name(),
                parity.error,
                parity.tolerance
            );
            (None, None)
        };
        measured.push(Measured {
            block,
            parity,
            seconds,
            spread,
        });
    }
    let timed = |b: Block| {
        (measured.iter())
            .find(|m| m.block == b)
            .and_then(|m| Some((m.seconds?, m.spread.unwrap_or(0.0))))
    };
    let best = (measured.iter())
        .filter_map(|m| m.seconds.map(|s| (s, m.block)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, b)| b)
        .ok_or_else(|| {
            Error::Gpu("no matmul variant passed its check against the CPU".to_string())
        })?;
    let choice = match (timed(best), timed(default)) {
        (Some((t, s)), Some((td, sd))) if t > td * (1.0 - s.max(sd)) => default,
        _ => best,
    };
    Ok((choice, measured))
}

/// Standard-normal inputs of a product, seeded.
pub fn random_inputs(
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ((ar, ac), (br, bc)) = key.stored_shapes((m, n, k));
    let normal = rand_distr::StandardNormal;
    let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|_| normal.sample(&mut r)).collect() };
    let a = draw(ar * ac);
    let b = draw(br * bc);
    (a, b)
}

/// The CPU's product of `a` and `b` (stored as `key`'s transposes say) and `|A|·|B|`, the scale
/// [`Parity::of`] needs.
pub fn cpu_reference(
    key: MatmulKey,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut want = vec![0.0; m * n];
    crate::cpu::matmul(
        &mut want,
        a,
        b,
        m,
        n,
        k,
        key.trans_a,
        key.trans_b,
        crate::cpu::Epilogue::Store,
    );
    let (aa, ba): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|v| v.abs()).collect(),
        b.iter().map(|v| v.abs()).collect(),
    );
    let mut scale = vec![0.0; m * n];
    crate::cpu::matmul(
        &mut scale,
        &aa,
        &ba,
        m,
        n,
        k,
        key.trans_a,
        key.trans_b,
        crate::cpu::Epilogue::Store,
    );
    (want, scale)
}

/// A plain product (`Mode::Store`) of a variant in `layout`.
pub fn store_key(layout: Layout, trans_a: bool, trans_b: bool, block: Block) -> MatmulKey {
    MatmulKey {
        layout,
        trans_a,
        trans_b,
        mode: Mode::Store,
        block,
        bias: false,
        opt: Opt::Sgd,
        update: Update::default(),
        acc: Acc::default(),
        act: Act::default(),
    }
}

/// Check one variant against the CPU on fresh random inputs, its output poisoned first.
pub async fn check_variant(
    ctx: &GpuContext,
    key: MatmulKey,
    dims: (usize, usize, usize),
) -> Result<Parity> {
    let (m, n, k) = dims;
    let (a, b) = random_inputs(key, dims, (m * 31 + n * 17 + k) as u64);
    let (want, scale) = cpu_reference(key, &a, &b, dims);
    let poison = vec![f32::NAN; m * n];
    let out = super::run_matmul(ctx, key, &a, &b, dims, 0.0, &poison, None, None, None).await?;
    let mut p = Parity::of(&out.c, &want, &scale, k);
    if !out.padding_zero {
        p.passed = false;
        p.error = f64::INFINITY;
    }
    Ok(p)
}

/// Seconds per product of one variant: the median of `samples` timings of as many back-to-back
/// dispatches as take about `target_s` (at least one).
pub async fn time_variant(
    ctx: &GpuContext,
    key: MatmulKey,
    dims: (usize, usize, usize),
    samples: usize,
    target_s: f64,
) -> Result<Vec<f64>> {
    let once = super::time_matmul(ctx, key, dims, 1).await?;
    let reps = reps_for(once, target_s);
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        times.push(super::time_matmul(ctx, key, dims, reps).await?);
    }
    Ok(times)
}

/// Products per sample so that a sample takes about `target_s`, from one timed product.
pub fn reps_for(once: f64, target_s: f64) -> usize {
    ((target_s / once.max(1e-9)) as usize).clamp(1, 10_000)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Tune one product shape on `ctx`: check every variant, time those that pass, keep the fastest
/// (or the untuned choice, where the fastest is not faster beyond the noise: [`search`]).
pub async fn tune_shape(
    ctx: &GpuContext,
    layout: Layout,
    (trans_a, trans_b): (bool, bool),
    dims: (usize, usize, usize),
    target_s: f64,
) -> Result<Entry> {
    let (block, measured) = search(
        &Block::of_layout(layout),
        Block::for_product(ctx.plan_type, layout, dims),
        async |b| check_variant(ctx, store_key(layout, trans_a, trans_b, b), dims).await,
        async |b| {
            let key = store_key(layout, trans_a, trans_b, b);
            time_variant(ctx, key, dims, 3, target_s).await
        },
    )
    .await?;
    let (m, n, k) = dims;
    use super::pad4;
    Ok(Entry {
        layout,
        trans_a,
        trans_b,
        m: pad4(m),
        n: pad4(n),
        k: pad4(k),
        block,
        measured,
    })
}

/// Choose the layout for training from per-layout samples (seconds per epoch): the fastest median,
/// unless it beats the rule's choice `default` by less than the spread of either's samples.
pub fn choose_layout(default: Layout, samples: &[(Layout, Vec<f64>)]) -> (Layout, Vec<LayoutTime>) {
    let measured: Vec<LayoutTime> = (samples.iter())
        .map(|(layout, t)| {
            let mid = median(t);
            let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.iter().copied().fold(0.0, f64::max);
            LayoutTime {
                layout: *layout,
                seconds: mid,
                spread: (hi - lo) / mid,
            }
        })
        .collect();
    let best = (measured.iter()).min_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let rule = measured.iter().find(|m| m.layout == default);
    let choice = match (best, rule) {
        (Some(b), Some(d)) if b.seconds > d.seconds * (1.0 - b.spread.max(d.spread)) => default,
        (Some(b), _) => b.layout,
        (None, _) => default,
    };
    (choice, measured)
}

/// The tuning of adapter `id`: `old`'s (a tuning that passed [`parse_cache`], if any) with
/// `entries` merged in (replacing the same shapes) and `layout` where given (else `old`'s kept).
pub fn merge(
    id: AdapterId,
    old: Option<CacheFile>,
    entries: &[Entry],
    layout: Option<LayoutChoice>,
) -> CacheFile {
    let (mut all, old_layout) = old.map_or_else(Default::default, |f| (f.entries, f.layout));
    for e in entries {
        all.retain(|o| o.shape() != e.shape());
        all.push(e.clone());
    }
    CacheFile {
        format: CACHE_FORMAT.into(),
        version: CACHE_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernels: kernels_hash(),
        adapter: id,
        entries: all,
        layout: layout.or(old_layout),
    }
}

/// [`merge`] into the adapter's cache file (a stale or corrupt one is replaced), written
/// atomically. Returns the file's path.
pub fn save(
    info: &wgpu::AdapterInfo,
    entries: &[Entry],
    layout: Option<LayoutChoice>,
) -> Result<PathBuf> {
    let path = cache_path(info).ok_or_else(|| {
        Error::Gpu("no cache directory (set GPU_TRAIN_CACHE_DIR or HOME)".to_string())
    })?;
    let id = AdapterId::of(info);
    let old = read_cache(&path, &id).ok().flatten();
    let file = merge(id, old, entries, layout);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(&file).map_err(|e| Error::Gpu(e.to_string()))?;
    crate::io::atomic_write(&path, |w| w.write_all(text.as_bytes()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::block_on;

    /// The candidates of these tests.
    const THREE: [Block; 3] = [Block::B4x4, Block::B8x8, Block::B16x16];

    fn parity(passed: bool) -> Parity {
        Parity {
            error: if passed { 0.0 } else { 1.0 },
            tolerance: 1e-6,
            passed,
        }
    }

    /// [`search`] of [`THREE`] with plain closures.
    fn search_with(
        default: Block,
        check: impl Fn(Block) -> Parity,
        time: impl Fn(Block) -> Vec<f64>,
    ) -> Result<(Block, Vec<Measured>)> {
        block_on(search(
            &THREE,
            default,
            async |b| Ok(check(b)),
            async |b| Ok(time(b)),
        ))
    }

    #[test]
    fn search_never_chooses_a_variant_that_failed_its_check() {
        // 4x4 is the fastest but wrong: 16x16, the fastest correct one, is chosen.
        let (best, measured) = search_with(
            Block::B8x8,
            |b| parity(b != Block::B4x4),
            |b| match b {
                Block::B4x4 => vec![0.1; 3],
                Block::B8x8 => vec![3.0; 3],
                Block::B16x16 => vec![2.0; 3],
                _ => unreachable!("not a candidate"),
            },
        )
        .unwrap();
        assert_eq!(best, Block::B16x16);
        assert_eq!(
            measured[0].seconds, None,
            "a failed variant is not even timed"
        );
        let none = search_with(Block::B8x8, |_| parity(false), |_| vec![1.0]);
        assert!(none.is_err());
    }

    #[test]
    fn search_keeps_the_default_unless_another_variant_wins_beyond_the_noise() {
        // 8x8 is 7% faster by the medians, but the default's samples spread 10%: kept.
        let times = |b: Block| match b {
            Block::B4x4 => vec![5.0, 5.0, 5.0],
            Block::B8x8 => vec![1.85, 1.86, 1.87],
            Block::B16x16 => vec![1.9, 2.0, 2.1],
            _ => unreachable!("not a candidate"),
        };
        let pass = |_| parity(true);
        let (b, _) = search_with(Block::B16x16, pass, times).unwrap();
        assert_eq!(b, Block::B16x16);
        // Twice as fast, well beyond the spread: chosen.
        let faster = |b: Block| match b {
            Block::B8x8 => vec![0.95, 1.0, 1.05],
            other => times(other),
        };
        let (b, _) = search_with(Block::B16x16, pass, faster).unwrap();
        assert_eq!(b, Block::B8x8);
        // A default that fails its check gives way to the fastest correct variant.
        let (b, _) = search_with(Block::B16x16, |b| parity(b != Block::B16x16), times).unwrap();
        assert_eq!(b, Block::B8x8);
    }

    #[test]
    fn layout_choice_keeps_the_rule_unless_another_layout_wins_beyond_the_noise() {
        let (t, b) = (Layout::Texels, Layout::Buffer);
        // Buffer 5% faster, but the samples spread 10%: the rule's texels stay.
        let close = [(t, vec![1.0, 1.05, 1.1]), (b, vec![0.95, 1.0, 1.0])];
        assert_eq!(choose_layout(t, &close).0, t);
        // Buffer twice as fast: chosen, with both timed.
        let far = [(t, vec![2.0, 2.1, 2.2]), (b, vec![1.0, 1.0, 1.05])];
        let (choice, measured) = choose_layout(t, &far);
        assert_eq!(choice, b);
        assert_eq!(measured.len(), 2);
        assert_eq!(measured[0].seconds, 2.1);
        // Only one layout measured: that one.
        assert_eq!(choose_layout(t, &[(b, vec![1.0])]).0, b);
    }

    #[test]
    fn parity_catches_nan_and_wrong_values() {
        let want = [1.0f32, 2.0, 3.0];
        let scale = [1.0f32, 2.0, 3.0];
        assert!(Parity::of(&want, &want, &scale, 10).passed);
        assert!(!Parity::of(&[1.0, f32::NAN, 3.0], &want, &scale, 10).passed);
        assert!(!Parity::of(&[1.0, 2.001, 3.0], &want, &scale, 10).passed);
        let close = [1.0, 2.0 + 2.0 * f32::EPSILON, 3.0];
        assert!(Parity::of(&close, &want, &scale, 10).passed);
    }

    fn id() -> AdapterId {
        AdapterId {
            name: "A".into(),
            vendor: 1,
            device: 2,
            backend: "vulkan".into(),
            driver: "d".into(),
            driver_info: "1.0".into(),
        }
    }

    #[test]
    fn cache_is_ignored_when_corrupt_stale_or_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        assert_eq!(
            read_cache(&path, &id()),
            Ok(None),
            "no file: nothing, no error"
        );
        std::fs::write(&path, "{ not json").unwrap();
        assert!(read_cache(&path, &id()).unwrap_err().contains("corrupt"));
        let good = CacheFile {
            format: CACHE_FORMAT.into(),
            version: CACHE_VERSION,
            tool_version: "0".into(),
            kernels: kernels_hash(),
            adapter: id(),
            layout: None,
            entries: vec![Entry {
                layout: Layout::Texels,
                trans_a: true,
                trans_b: false,
                m: 1000,
                n: 100,
                k: 64,
                block: Block::B8x8,
                measured: vec![],
            }],
        };
        let write =
            |f: &CacheFile| std::fs::write(&path, serde_json::to_string(f).unwrap()).unwrap();
        write(&good);
        let read = read_cache(&path, &id()).unwrap().unwrap();
        assert_eq!(read, good);
        let table = Table::from_entries(&read.entries);
        let texels = Layout::Texels;
        let got = table.get(texels, (true, false), (1000, 100, 64));
        assert_eq!(got, Some(Block::B8x8));
        assert_eq!(
            table.get(texels, (true, false), (999, 99, 63)),
            Some(Block::B8x8),
            "padded shapes"
        );
        assert_eq!(table.get(texels, (false, false), (1000, 100, 64)), None);
        assert_eq!(
            table.get(Layout::Buffer, (true, false), (1000, 100, 64)),
            None,
            "a choice for another layout"
        );
        write(&CacheFile {
            kernels: "0".into(),
            ..good.clone()
        });
        assert!(read_cache(&path, &id())
            .unwrap_err()
            .contains("other kernels"));
        write(&CacheFile {
            version: CACHE_VERSION + 1,
            ..good.clone()
        });
        assert!(read_cache(&path, &id()).unwrap_err().contains("version"));
        write(&good);
        let other = AdapterId {
            driver_info: "2.0".into(),
            ..id()
        };
        assert!(read_cache(&path, &other)
            .unwrap_err()
            .contains("driver d 1.0"));
    }

    #[test]
    fn merge_replaces_the_same_shapes_and_keeps_the_measured_layout() {
        let entry = |layout, m, block| Entry {
            layout,
            trans_a: false,
            trans_b: false,
            m,
            n: 100,
            k: 1000,
            block,
            measured: vec![],
        };
        let choice = |layout| LayoutChoice {
            layout,
            job: "[1000, 100, 10] batch 64".into(),
            measured: vec![],
        };
        let old = merge(
            id(),
            None,
            &[
                entry(Layout::Buffer, 64, Block::B4x4),
                entry(Layout::Texels, 64, Block::B8x8),
            ],
            Some(choice(Layout::Buffer)),
        );
        let text = serde_json::to_string(&old).unwrap();
        let old = parse_cache(&text, &id()).expect("a merged tuning is a current cache file");
        // 63 pads to 64: the same shape, replaced; another shape is added; no layout given keeps
        // the old choice.
        let new = merge(
            id(),
            Some(old),
            &[
                entry(Layout::Buffer, 63, Block::B16x16),
                entry(Layout::Buffer, 32, Block::B8x8),
            ],
            None,
        );
        assert_eq!(new.entries.len(), 3, "{:?}", new.entries);
        let table = Table::of_file(&new);
        let dims = |m| (m, 100, 1000);
        assert_eq!(
            table.get(Layout::Buffer, (false, false), dims(64)),
            Some(Block::B16x16)
        );
        assert_eq!(
            table.get(Layout::Texels, (false, false), dims(64)),
            Some(Block::B8x8)
        );
        assert_eq!(
            table.get(Layout::Buffer, (false, false), dims(32)),
            Some(Block::B8x8)
        );
        assert_eq!(table.layout, Some(Layout::Buffer));
        let newer = merge(id(), Some(new), &[], Some(choice(Layout::Texels)));
        assert_eq!(Table::of_file(&newer).layout, Some(Layout::Texels));
    }
}

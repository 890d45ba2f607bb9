//! The tuning cache: its file format, the adapter and kernels it is valid for, where it lives,
//! reading it (a stale or foreign file ignored with the reason), merging and saving it.

use super::*;

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
    /// Infinite (null in JSON) where an element was NaN or the padding was written.
    #[serde(deserialize_with = "crate::check::null_as_infinity")]
    pub error: f64,
    pub tolerance: f64,
    pub passed: bool,
}

impl Parity {
    /// Compare `got` with `want`, scaled elementwise by `scale` (`|A|·|B|`), for depth `k`
    /// ([`crate::check::matmul::product_ratio`]).
    pub fn of(got: &[f32], want: &[f32], scale: &[f32], k: usize) -> Self {
        Parity::of_ratio(crate::check::matmul::product_ratio(got, want, scale, k), k)
    }

    /// A check whose worst element is `ratio` of its bound `2γ_k·|A|·|B|` (infinite: a NaN, a
    /// wrong length, non-zero padding).
    pub fn of_ratio(ratio: f64, k: usize) -> Self {
        let tolerance = crate::check::two_gamma(k);
        Parity {
            error: ratio * tolerance,
            tolerance,
            passed: ratio <= 1.0,
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
    use crate::gpu::pad4;
    (layout, trans_a, trans_b, pad4(m), pad4(n), pad4(k))
}

impl Entry {
    fn shape(&self) -> Shape {
        let dims = (self.m, self.n, self.k);
        shape_of(self.layout, (self.trans_a, self.trans_b), dims)
    }
}

/// The tuned variants of one adapter, by shape.
#[derive(Debug, Default, Clone)]
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
    let hash = |s: &Sources| {
        let all: String = s.iter().map(|(_, src)| src).collect();
        format!("{:016x}", fnv(all.as_bytes()))
    };
    match super::super::kernels::current() {
        Ok(s) => hash(s),
        Err(_) => hash(&Sources::embedded()),
    }
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

    /// Take the choice of a measured entry (replacing the shape's).
    pub fn insert(&mut self, e: &Entry) {
        self.entries.insert(e.shape(), e.block);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
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

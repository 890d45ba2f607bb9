//! Opening a device on an adapter with its limits, and which layouts it can run. Kept apart from
//! the work so tests and benches can open one context and share it. Listing and choosing the
//! adapters is `adapters.rs` (re-exported here).

use super::kernels::{Block, Checks, Kernels};
use super::layout::Layout;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

pub use super::adapters::*;

/// Whether an adapter's own clock can time kernels: timestamps inside compute passes (native
/// feature), at the start and end of each pass (WebGPU's), or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timestamps {
    InsidePasses,
    PerPass,
    None,
}

/// What the adapter lacks, with `limits`, to run the texels layout (rgba32float storage textures
/// read and written, four of them in the matmul kernel), if anything.
fn texels_missing(
    adapter: &wgpu::Adapter,
    limits: &wgpu::Limits,
    wgsl: wgpu::WgslLanguageFeatures,
) -> Option<String> {
    // A browser's WebGPU reports every format's guaranteed features, read-only rgba32float
    // storage included; whether its shader compiler accepts `texture_storage_2d<_, read>` is the
    // WGSL language feature.
    if !wgsl.contains(wgpu::WgslLanguageFeatures::ReadOnlyAndReadWriteStorageTextures) {
        return Some(
            "WGSL's readonly_and_readwrite_storage_textures language feature (read-only storage \
             textures)"
                .into(),
        );
    }
    let needed = wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY
        | wgpu::TextureFormatFeatureFlags::STORAGE_WRITE_ONLY;
    let format = adapter.get_texture_format_features(super::kernels::MATRIX_FORMAT);
    if !format.flags.contains(needed)
        || !format
            .allowed_usages
            .contains(wgpu::TextureUsages::STORAGE_BINDING)
    {
        return Some("read-only and write-only rgba32float storage textures".into());
    }
    let n = limits.max_storage_textures_per_shader_stage;
    (n < 4).then(|| format!("4 storage textures per shader stage (the limit is {n})"))
}

/// The WGSL language features natively: naga, under every native backend, accepts read-only
/// storage textures (whether the adapter has them for rgba32float is the format check).
#[cfg(not(target_arch = "wasm32"))]
const NATIVE_WGSL: wgpu::WgslLanguageFeatures =
    wgpu::WgslLanguageFeatures::ReadOnlyAndReadWriteStorageTextures;

/// The storage buffers per shader stage the buffer layout's matmul kernel binds.
pub const BUFFER_LAYOUT_STORAGE_BUFFERS: u32 = 8;

/// What the adapter lacks, with `limits`, to run the buffer layout, if anything.
fn buffer_missing(limits: &wgpu::Limits) -> Option<String> {
    let n = limits.max_storage_buffers_per_shader_stage;
    (n < BUFFER_LAYOUT_STORAGE_BUFFERS).then(|| {
        format!(
            "{BUFFER_LAYOUT_STORAGE_BUFFERS} storage buffers per shader stage (the limit is {n})"
        )
    })
}

/// `GPU_TRAIN_PLAN_AS=discrete|integrated|virtual|cpu|other`: make the untuned choices (layout,
/// matmul blocks, bounds checks) as for an adapter of that type, to see and test a real GPU's
/// plan on a software adapter (its dispatches and workgroups with `--profile` or
/// `RUST_LOG=debug`).
pub const PLAN_AS_ENV: &str = "GPU_TRAIN_PLAN_AS";

/// The adapter type choices are made for: `own`, or what [`PLAN_AS_ENV`] says.
fn plan_type(own: wgpu::DeviceType) -> wgpu::DeviceType {
    use wgpu::DeviceType as T;
    let Ok(v) = std::env::var(PLAN_AS_ENV) else {
        return own;
    };
    let t = match v.trim().to_ascii_lowercase().as_str() {
        "" => return own,
        "discrete" => T::DiscreteGpu,
        "integrated" => T::IntegratedGpu,
        "virtual" => T::VirtualGpu,
        "cpu" => T::Cpu,
        "other" => T::Other,
        other => {
            log::warn!("{PLAN_AS_ENV}={other}: not an adapter type; using the adapter's own");
            return own;
        }
    };
    log::info!("{PLAN_AS_ENV}: choices made as for an adapter of type {t:?}");
    t
}

/// Which device limits to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsChoice {
    /// The adapter's own limits, so that large jobs fit wherever the hardware allows.
    #[default]
    Adapter,
    /// WebGPU's defaults (`wgpu::Limits::default()`), what a browser grants without asking: the
    /// proof that the kernels fit a browser.
    Webgpu,
}

impl LimitsChoice {
    pub fn name(self) -> &'static str {
        match self {
            LimitsChoice::Adapter => "adapter",
            LimitsChoice::Webgpu => "webgpu",
        }
    }
}

/// How a GPU is used: the memory layout (None: the adapter's own choice,
/// [`GpuContext::auto_layout`]) and the limits requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuOptions {
    pub layout: Option<Layout>,
    pub limits: LimitsChoice,
}

/// An open device with everything built once: queue, limits, kernels.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub kernels: Kernels,
    /// Matmul variants measured by `gpu-train tune` on this adapter and driver (from the cache).
    pub tuning: super::tune::Table,
    /// What this run's own tuning did before training (`--tune`), if it tuned.
    pub self_tuned: Option<super::tune::SelfTuned>,
    /// What the limits were asked as.
    pub limits_choice: LimitsChoice,
    /// The adapter type the untuned choices (layout, matmul blocks, bounds checks) are made for:
    /// the adapter's own, unless [`PLAN_AS_ENV`] names another.
    pub plan_type: wgpu::DeviceType,
    /// The first error the device reported outside an error scope, if any.
    errors: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Open a device on `adapter` with the adapter's own limits (not the conservative defaults), so
    /// that large jobs fit wherever the hardware allows.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(adapter: &wgpu::Adapter) -> Result<Arc<Self>> {
        Self::with_limits(adapter, |_| {})
    }

    /// Open a device on `adapter` with the limits `limits` asks for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(adapter: &wgpu::Adapter, limits: LimitsChoice) -> Result<Arc<Self>> {
        crate::wait::block_on(Self::request(adapter, limits, NATIVE_WGSL, None))
    }

    /// [`GpuContext::open`] as a future (what the browser awaits), with the WGSL language
    /// features of the instance (`wgpu::Instance::wgsl_language_features`: in a browser, those
    /// of its shader compiler, which decide whether the texels layout can run), and the name to
    /// give the adapter where it has none of its own (a browser's WebGPU tells wgpu none; the
    /// page reads `GPUAdapterInfo`).
    // In the browser nothing is Send (one thread); natively the context is shared across threads.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn request(
        adapter: &wgpu::Adapter,
        limits: LimitsChoice,
        wgsl: wgpu::WgslLanguageFeatures,
        name: Option<String>,
    ) -> Result<Arc<Self>> {
        let mut ctx = match limits {
            LimitsChoice::Adapter => {
                Self::build(adapter, |_| {}, LimitsChoice::Adapter, wgsl).await?
            }
            LimitsChoice::Webgpu => {
                let webgpu = wgpu::Limits::default();
                let mut short = Vec::new();
                webgpu.check_limits_with_fail_fn(&adapter.limits(), false, |name, want, have| {
                    short.push(format!("{name} {have} (WebGPU's default {want})"))
                });
                if !short.is_empty() {
                    return Err(Error::Device(format!(
                        "{} offers less than WebGPU's default limits: {}; use --limits adapter",
                        adapter.get_info().name,
                        short.join(", ")
                    )));
                }
                Self::build(adapter, |l| *l = webgpu, LimitsChoice::Webgpu, wgsl).await?
            }
        };
        if let (Some(name), true) = (name, ctx.info.name.is_empty()) {
            ctx.info.name = name;
        }
        Ok(Arc::new(ctx))
    }

    /// [`GpuContext::new`] with the adapter's limits changed by `adjust` first (tests request
    /// small limits to exercise the splitting of large buffers).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_limits(
        adapter: &wgpu::Adapter,
        adjust: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Arc<Self>> {
        crate::wait::block_on(Self::build(
            adapter,
            adjust,
            LimitsChoice::Adapter,
            NATIVE_WGSL,
        ))
        .map(Arc::new)
    }

    async fn build(
        adapter: &wgpu::Adapter,
        adjust: impl FnOnce(&mut wgpu::Limits),
        limits_choice: LimitsChoice,
        wgsl: wgpu::WgslLanguageFeatures,
    ) -> Result<Self> {
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        adjust(&mut limits);
        // Timestamp queries for `--profile` and the bench, where the adapter has them: per pass
        // (WebGPU's) and inside passes (native).
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let missing = [
            texels_missing(adapter, &limits, wgsl),
            buffer_missing(&limits),
        ];
        if let [Some(t), Some(b)] = &missing {
            return Err(Error::Device(format!(
                "{} can run neither memory layout: texels needs {t}; buffer needs {b}",
                info.name
            )));
        }
        let (device, queue) = (adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpu-train"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .await
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", info.name)))?;
        let errors: Arc<Mutex<Option<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            log::error!("wgpu: device lost ({reason:?}): {msg}");
            if let Ok(mut slot) = sink.lock() {
                // Lost supersedes any earlier error: nothing on the device can be trusted.
                *slot = Some(
                    format!("the device was lost ({reason:?}) {msg}")
                        .trim()
                        .to_string(),
                );
            }
        });
        log::info!(
            "opened {} ({:?}, {}, driver {} {}): max_texture_dimension_2d {}, \
             max_storage_buffer_binding_size {}, max_buffer_size {}",
            info.name,
            info.device_type,
            info.backend,
            info.driver,
            info.driver_info,
            limits.max_texture_dimension_2d,
            limits.max_storage_buffer_binding_size,
            limits.max_buffer_size
        );
        let plan_type = plan_type(info.device_type);
        let sources = super::kernels::current()?;
        let kernels = Kernels::new(&device, Checks::for_adapter(plan_type), missing, sources);
        let tuning = super::tune::Table::load(&info);
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            kernels,
            tuning,
            self_tuned: None,
            limits_choice,
            plan_type,
            errors,
        })
    }

    /// This device with its storage bindings held to at most `bytes`: a batch whose matrices
    /// exceed it is bound in bands of rows in the buffer layout, as on an adapter with that
    /// limit (its own kernel cache; the device, queue and error sink shared). `verify` checks the
    /// bands this way on any adapter.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn with_binding_limit(&self, bytes: u64) -> Arc<GpuContext> {
        let mut limits = self.limits.clone();
        limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(bytes);
        Arc::new(GpuContext {
            device: self.device.clone(),
            queue: self.queue.clone(),
            info: self.info.clone(),
            limits,
            kernels: self.kernels.fresh(&self.device),
            tuning: self.tuning.clone(),
            self_tuned: None,
            limits_choice: self.limits_choice,
            plan_type: self.plan_type,
            errors: self.errors.clone(),
        })
    }

    /// This adapter, opened, as every output describes it: with `layout`, the limits requested,
    /// how kernels are timed and the tuned shapes.
    pub fn describe(&self, layout: Layout) -> crate::backend::DeviceInfo {
        crate::backend::DeviceInfo {
            layout: Some(layout),
            limits: Some(self.limits_choice.name().into()),
            timestamps: serde_json::to_value(self.timestamps())
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            tuned_shapes: self.tuning.len(),
            self_tuned: self.self_tuned.clone(),
            ..super::adapters::describe(&self.info)
        }
    }

    /// How the GPU's own clock can time kernels here.
    pub fn timestamps(&self) -> Timestamps {
        let f = self.device.features();
        if !f.contains(wgpu::Features::TIMESTAMP_QUERY) {
            Timestamps::None
        } else if f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            Timestamps::InsidePasses
        } else {
            Timestamps::PerPass
        }
    }

    /// The matmul variant for a product `[m, k]·[k, n]` with these transposes: the one `gpu-train
    /// tune` measured fastest here, else the untuned choice.
    pub fn block_for(
        &self,
        layout: Layout,
        transposes: (bool, bool),
        dims: (usize, usize, usize),
    ) -> Block {
        self.tuning
            .get(layout, transposes, dims)
            .unwrap_or_else(|| Block::for_product(self.plan_type, layout, dims))
    }

    /// The layout `--layout auto` takes here: the one `gpu-train tune` measured fastest for
    /// training on this adapter and driver, if it did; else texels on adapters of type Cpu,
    /// buffer on every other (see [`Layout::for_adapter`]), or the one this adapter can run.
    pub fn auto_layout(&self) -> Layout {
        if let Some(measured) = self.tuning.layout.filter(|&l| self.kernels.supports(l)) {
            return measured;
        }
        let rule = Layout::for_adapter(self.plan_type);
        if self.kernels.supports(rule) {
            rule
        } else {
            Layout::Buffer
        }
    }

    /// Open the adapter `--device auto` would pick, if any.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn auto() -> Result<Option<Arc<Self>>> {
        match choose(&DeviceChoice::Auto, list_adapters())? {
            Some(a) => Self::new(&a.adapter).map(Some),
            None => Ok(None),
        }
    }

    /// Fail with the first error the device reported since it was opened.
    pub fn check(&self) -> Result<()> {
        match self.errors.lock().ok().and_then(|s| s.clone()) {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Wait until the work submitted so far is done.
    pub async fn wait(&self) -> Result<()> {
        let (tx, rx) = crate::wait::oneshot();
        self.queue.on_submitted_work_done(move || tx.send(()));
        self.poll()?;
        rx.await
            .ok_or_else(|| Error::Gpu("the queue's work-done callback never ran".into()))?;
        self.check()
    }

    /// Natively, process the device's callbacks until the queue is idle (in the browser, the event
    /// loop runs them; this returns at once).
    fn poll(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
    }

    /// Copy `bytes` bytes of `src` (from offset 0) back to the host as f32.
    pub async fn read_f32(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        self.map_f32(&staging, bytes).await
    }

    /// The texels of a matrix texture (rgba32float, see `shaders/matmul.wgsl`) as row-major f32,
    /// `4 * width` per row. Read in bands of rows that each fit `max_buffer_size`.
    pub async fn read_texture(&self, tex: &wgpu::Texture) -> Result<Vec<f32>> {
        let size = tex.size();
        let row_bytes = size.width as u64 * 16;
        let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as u64;
        let stride = row_bytes.div_ceil(align) * align;
        let band =
            (self.limits.max_buffer_size / stride).clamp(1, size.height.max(1) as u64) as u32;
        let width = (row_bytes / 4) as usize;
        let mut out = Vec::with_capacity(width * size.height as usize);
        for y0 in (0..size.height).step_by(band as usize) {
            let rows = band.min(size.height - y0);
            let bytes = stride * rows as u64;
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("texture readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self.device.create_command_encoder(&Default::default());
            enc.copy_texture_to_buffer(
                wgpu::TexelCopyTextureInfo {
                    origin: wgpu::Origin3d { x: 0, y: y0, z: 0 },
                    ..tex.as_image_copy()
                },
                wgpu::TexelCopyBufferInfo {
                    buffer: &staging,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(stride as u32),
                        rows_per_image: Some(rows),
                    },
                },
                wgpu::Extent3d {
                    height: rows,
                    ..size
                },
            );
            self.queue.submit([enc.finish()]);
            let texels = self.map_f32(&staging, bytes).await?;
            let stride = (stride / 4) as usize;
            out.extend(
                texels
                    .chunks(stride)
                    .flat_map(|r| r[..width].iter().copied()),
            );
        }
        Ok(out)
    }

    /// Map a MAP_READ buffer (after the copies into it were submitted) and return its contents.
    pub async fn map_f32(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
        let (tx, rx) = crate::wait::oneshot();
        staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| tx.send(r));
        self.poll()?;
        rx.await
            .ok_or_else(|| Error::Gpu("readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
        self.check()?;
        let out = {
            let view = staging
                .get_mapped_range(0..bytes)
                .map_err(|e| Error::Gpu(format!("reading the readback buffer: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.unmap();
        Ok(out)
    }
}

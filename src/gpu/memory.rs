//! Device memory: matrices in either layout (rgba32float textures or vec4 storage buffers),
//! vectors and storage buffers, per-element buffers split into bands past the adapter's binding
//! limits, and the resident dataset.
//! Every allocation is checked against the limits first, so a job too large names the buffer.

use super::kernels::MATRIX_FORMAT;
use super::layout::{from_padded, pad4, to_padded, Layout};
use super::GpuContext;
use crate::error::{Error, Result};
use crate::init::Matrix;
use wgpu::util::DeviceExt;

pub(crate) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// `b` bytes, and in MiB, for the messages of a job too large.
pub(crate) fn fmt_bytes(b: u64) -> String {
    format!("{b} bytes ({:.1} MiB)", b as f64 / (1u64 << 20) as f64)
}

/// Fail naming `label` and the limit if `bytes` exceed it.
fn within(label: &str, bytes: u64, limit: &'static str, allowed: u64) -> Result<()> {
    if bytes > allowed {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: fmt_bytes(bytes),
            limit,
            allowed: fmt_bytes(allowed),
        });
    }
    Ok(())
}

/// Fail unless a buffer of `bytes` can be created and bound whole.
pub(crate) fn too_large(ctx: &GpuContext, label: &str, bytes: u64) -> Result<()> {
    let l = &ctx.limits;
    let binding = l.max_storage_buffer_binding_size;
    within(label, bytes, "max_storage_buffer_binding_size", binding)?;
    within(label, bytes, "max_buffer_size", l.max_buffer_size)
}

/// Where the vec4 of a matrix (or the dataset) live: a texture and its view (texels layout), or a
/// storage buffer (buffer layout). A clone is another handle to the same memory.
#[derive(Clone)]
pub enum Storage {
    Texture {
        texture: wgpu::Texture,
        view: wgpu::TextureView,
    },
    Buffer(wgpu::Buffer),
}

impl Storage {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            Storage::Texture { view, .. } => wgpu::BindingResource::TextureView(view),
            Storage::Buffer(b) => b.as_entire_binding(),
        }
    }

    pub fn layout(&self) -> Layout {
        match self {
            Storage::Texture { .. } => Layout::Texels,
            Storage::Buffer(_) => Layout::Buffer,
        }
    }
}

/// A `[rows, cols]` matrix on the GPU in the padded layout `[pad4(rows), pad4(cols)]`: an
/// rgba32float texture `pad4(cols) / 4` texels wide and `pad4(rows)` high, or a storage buffer of
/// `pad4(rows)·pad4(cols)` f32, row-major.
///
/// A sweep's models stacked in one dispatch hold `models` such matrices in one buffer, one after
/// the other, or in one texture, one below the other; `rows` and `cols` are then one model's.
pub struct GpuMatrix {
    pub storage: Storage,
    pub rows: usize,
    pub cols: usize,
    pub models: usize,
}

impl GpuMatrix {
    fn extent(rows: usize, cols: usize) -> wgpu::Extent3d {
        wgpu::Extent3d {
            width: (pad4(cols) / 4) as u32,
            height: pad4(rows) as u32,
            depth_or_array_layers: 1,
        }
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.storage.binding()
    }

    /// From one model's matrix to the next's, as the kernels take it: in vec4 in the buffer
    /// layout, in texel rows in the texels layout (the models stacked down the texture); 0 for one
    /// matrix (a lone run's, or data that every model of a sweep reads).
    pub fn model_stride(&self) -> u32 {
        match (self.models, &self.storage) {
            (0 | 1, _) => 0,
            (_, Storage::Buffer(_)) => (pad4(self.rows) * pad4(self.cols) / 4) as u32,
            (_, Storage::Texture { .. }) => pad4(self.rows) as u32,
        }
    }

    /// The padded rows `r0..r1` alone (a band of a buffer-layout matrix larger than one storage
    /// binding; `r0` a multiple of [`BAND_ALIGN_ROWS`]); the whole matrix in the texels layout.
    pub fn window(&self, (r0, r1): (usize, usize)) -> wgpu::BindingResource<'_> {
        match &self.storage {
            Storage::Buffer(buffer) => {
                let row = (pad4(self.cols) * 4) as u64;
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: r0 as u64 * row,
                    size: wgpu::BufferSize::new((r1 - r0) as u64 * row),
                })
            }
            Storage::Texture { .. } => self.binding(),
        }
    }

    pub fn layout(&self) -> Layout {
        self.storage.layout()
    }

    /// The whole padded matrix, `[pad4(rows), pad4(cols)]` row-major.
    pub async fn read_padded(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Texture { texture, .. } => ctx.read_texture(texture).await,
            Storage::Buffer(b) => ctx.read_f32(b, b.size()).await,
        }
    }

    /// Overwrite with the whole padded matrix.
    pub fn write_padded(&self, ctx: &GpuContext, padded: &[f32]) {
        debug_assert_eq!(padded.len(), pad4(self.rows) * pad4(self.cols));
        match &self.storage {
            Storage::Texture { texture, .. } => {
                write_texels(ctx, texture, padded, Self::extent(self.rows, self.cols))
            }
            Storage::Buffer(b) => ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(padded)),
        }
    }

    /// Overwrite with the `[rows, cols]` row-major `data` (padding zero).
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) {
        self.write_padded(ctx, &to_padded(self.rows, self.cols, data, 0.0));
    }

    /// The `[rows, cols]` matrix, padding stripped.
    pub async fn read(&self, ctx: &GpuContext) -> Result<Matrix> {
        let padded = self.read_padded(ctx).await?;
        Ok(Matrix::from_vec(
            self.rows,
            self.cols,
            from_padded(self.rows, self.cols, &padded),
        ))
    }
}

/// Upload `padded` (rgba32float texels, row after row, layer after layer) into the whole of
/// `texture`, of `size`.
pub(crate) fn write_texels(
    ctx: &GpuContext,
    texture: &wgpu::Texture,
    padded: &[f32],
    size: wgpu::Extent3d,
) {
    ctx.queue.write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(padded),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(size.width * 16),
            rows_per_image: Some(size.height),
        },
        size,
    );
}

/// A `[rows, cols]` matrix in the padded GPU layout, zero-filled, or holding `data` (row-major,
/// unpadded) if given.
pub(crate) fn matrix(
    ctx: &GpuContext,
    layout: Layout,
    label: &str,
    rows: usize,
    cols: usize,
    data: Option<&[f32]>,
) -> Result<GpuMatrix> {
    let padded = data.map(|d| to_padded(rows, cols, d, 0.0));
    padded_matrix(ctx, layout, label, rows, cols, padded.as_deref())
}

/// A vector of `n` f32 (a bias) in a storage buffer of `pad4(n)`, the padding set to `fill`,
/// holding `data` if given (else `fill` throughout).
pub(crate) fn vector(
    ctx: &GpuContext,
    label: &str,
    n: usize,
    data: Option<&[f32]>,
    fill: f32,
) -> Result<wgpu::Buffer> {
    let mut v = vec![fill; pad4(n)];
    if let Some(d) = data {
        v[..n].copy_from_slice(d);
    }
    storage(ctx, label, v.len(), Some(&v))
}

/// A `[rows, cols]` matrix filled with `padded` (`[pad4(rows), pad4(cols)]`, padding included) if
/// given, else zeros, in `layout`; checked against the adapter's limits first.
pub(crate) fn padded_matrix(
    ctx: &GpuContext,
    layout: Layout,
    label: &str,
    rows: usize,
    cols: usize,
    padded: Option<&[f32]>,
) -> Result<GpuMatrix> {
    ctx.kernels.layout(layout)?;
    if let Some(p) = padded {
        debug_assert_eq!(p.len(), pad4(rows) * pad4(cols));
    }
    if layout == Layout::Buffer {
        let buf = storage(ctx, label, pad4(rows) * pad4(cols), padded)?;
        return Ok(GpuMatrix {
            storage: Storage::Buffer(buf),
            rows,
            cols,
            models: 1,
        });
    }
    let size = GpuMatrix::extent(rows, cols);
    let max = ctx.limits.max_texture_dimension_2d;
    if size.width > max || size.height > max {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: format!(
                "a {}x{} texture ({} rows, {} columns / 4)",
                size.width,
                size.height,
                pad4(rows),
                pad4(cols)
            ),
            limit: "max_texture_dimension_2d",
            allowed: max.to_string(),
        });
    }
    let texture = matrix_texture(ctx, label, size, wgpu::TextureUsages::COPY_SRC);
    if let Some(p) = padded {
        write_texels(ctx, &texture, p, size);
    }
    let view = texture.create_view(&Default::default());
    Ok(GpuMatrix {
        storage: Storage::Texture { texture, view },
        rows,
        cols,
        models: 1,
    })
}

/// Bands of rows start at multiples of this many rows: with rows of a multiple of 16 bytes, their
/// byte offsets are multiples of 1024, above any adapter's `min_storage_buffer_offset_alignment`.
pub const BAND_ALIGN_ROWS: usize = 64;

/// A buffer-layout `[rows, cols]` matrix (zeros) that may exceed one storage binding (it is bound
/// in bands of rows, [`GpuMatrix::window`]): checked against `max_buffer_size` only. In the texels
/// layout, [`matrix`].
pub(crate) fn banded_matrix(
    ctx: &GpuContext,
    layout: Layout,
    label: &str,
    rows: usize,
    cols: usize,
    data: Option<&[f32]>,
) -> Result<GpuMatrix> {
    if layout != Layout::Buffer {
        return matrix(ctx, layout, label, rows, cols, data);
    }
    ctx.kernels.layout(layout)?;
    let len = pad4(rows) * pad4(cols);
    let bytes = (len.max(1) * 4) as u64;
    within(label, bytes, "max_buffer_size", ctx.limits.max_buffer_size)?;
    let padded = data.map(|d| to_padded(rows, cols, d, 0.0));
    let buf = allocate(ctx, label, len, padded.as_deref());
    Ok(GpuMatrix {
        storage: Storage::Buffer(buf),
        rows,
        cols,
        models: 1,
    })
}

/// `models` zeroed `[rows, cols]` matrices one after the other: a sweep's per-model matrix,
/// bound whole by one dispatch for all models. In the buffer layout one storage buffer (checked
/// against one storage binding), in the texels layout one texture `pad4(rows)` texel rows per
/// model (checked against the texture side).
pub(crate) fn stacked_matrix(
    ctx: &GpuContext,
    layout: Layout,
    label: &str,
    (rows, cols): (usize, usize),
    models: usize,
) -> Result<GpuMatrix> {
    let all = padded_matrix(ctx, layout, label, models * pad4(rows), cols, None)?;
    Ok(GpuMatrix {
        rows,
        models,
        ..all
    })
}

/// An rgba32float texture of `size` (layers in its depth) that kernels bind as storage and uploads
/// fill, with `usage` besides.
fn matrix_texture(
    ctx: &GpuContext,
    label: &str,
    size: wgpu::Extent3d,
    usage: wgpu::TextureUsages,
) -> wgpu::Texture {
    ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: MATRIX_FORMAT,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST | usage,
        view_formats: &[],
    })
}

/// A storage buffer of `len` f32, filled with `data` if given; checked against the limits first.
pub(crate) fn storage(
    ctx: &GpuContext,
    label: &str,
    len: usize,
    data: Option<&[f32]>,
) -> Result<wgpu::Buffer> {
    too_large(ctx, label, (len.max(1) * 4) as u64)?;
    Ok(allocate(ctx, label, len, data))
}

/// A storage buffer of `len` f32 (zeros, or `data`), unchecked.
fn allocate(ctx: &GpuContext, label: &str, len: usize, data: Option<&[f32]>) -> wgpu::Buffer {
    match data {
        Some(d) => ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(d),
                usage: STORAGE,
            }),
        None => ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        }),
    }
}

/// A per-element buffer in the padded layout of a `[rows, cols]` matrix (`pad4(rows)·pad4(cols)`
/// f32: a weight's optimizer state, a shared weight's gradient sum), split into bands of
/// `band_rows` rows, one buffer each, so that no buffer exceeds the adapter's
/// `max_storage_buffer_binding_size` or `max_buffer_size`. A product writing such a buffer runs
/// as one dispatch per band (`row0..row_end` in `shaders/matmul.wgsl`). Most jobs have one band.
///
/// A buffer may hold `copies` such matrices, each band's rows of the first, then of the second
/// (the optimizer's m and v: one binding, see `shaders/optimizer.wgsl`).
///
/// A sweep's models stacked in one dispatch hold `models` such matrices in one band: every
/// model's first copy, then every model's second (`rows` one model's).
pub struct Banded {
    pub(crate) band_rows: usize,
    pub(crate) bufs: Vec<wgpu::Buffer>,
    pub(crate) cols: usize,
    pub(crate) copies: usize,
    pub(crate) models: usize,
}

impl Banded {
    /// Zeros, `copies` matrices in each band's buffer.
    pub(crate) fn with_copies(
        ctx: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        copies: usize,
    ) -> Result<Self> {
        Self::banded_as(ctx, label, rows, cols, copies, copies)
    }

    /// Zeros, `copies` matrices in each band's buffer, in bands of as many rows as a buffer of
    /// `band_copies` (at least `copies`) would have: banded alike with such a buffer that the
    /// same product binds (a gradient summed beside Adam's two moments), as a kernel indexes
    /// every per-element buffer of a band from the same first row.
    pub(crate) fn banded_as(
        ctx: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        copies: usize,
        band_copies: usize,
    ) -> Result<Self> {
        let l = &ctx.limits;
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        let row_bytes = (pad4(cols) * 4 * copies.max(band_copies)) as u64;
        let fit = ((limit / row_bytes) as usize / 4) * 4;
        if fit == 0 {
            let which = if l.max_storage_buffer_binding_size <= l.max_buffer_size {
                "max_storage_buffer_binding_size"
            } else {
                "max_buffer_size"
            };
            return Err(Error::TooLarge {
                buffer: label.into(),
                needed: format!("{} bytes for its smallest band (4 rows)", 4 * row_bytes),
                limit: which,
                allowed: format!("{limit} bytes"),
            });
        }
        let total = pad4(rows);
        let band_rows = fit.min(total).max(4);
        let bufs = (0..total.div_ceil(band_rows))
            .map(|j| {
                let r0 = j * band_rows;
                let n = (total - r0).min(band_rows) * pad4(cols) * copies;
                let name = format!("{label} (band {})", j + 1);
                storage(ctx, &name, n, None)
            })
            .collect::<Result<Vec<_>>>()?;
        if bufs.len() > 1 {
            log::info!("{label}: {} bands of {band_rows} rows", bufs.len());
        }
        Ok(Banded {
            band_rows,
            bufs,
            cols,
            copies,
            models: 1,
        })
    }

    /// One buffer holding the whole matrix (already checked against the limits).
    pub(crate) fn whole(buf: wgpu::Buffer, rows: usize, cols: usize) -> Self {
        Banded {
            band_rows: pad4(rows).max(4),
            bufs: vec![buf],
            cols,
            copies: 1,
            models: 1,
        }
    }

    /// `models` zeroed `[rows, cols]` matrices with `copies` each, in one unbanded buffer (a
    /// sweep's per-model state, bound whole by one dispatch for all models): every model's first
    /// copy, then every model's second; checked against one storage binding.
    pub(crate) fn stacked(
        ctx: &GpuContext,
        label: &str,
        (rows, cols): (usize, usize),
        copies: usize,
        models: usize,
    ) -> Result<Self> {
        let buf = storage(ctx, label, models * copies * pad4(rows) * pad4(cols), None)?;
        Ok(Banded {
            band_rows: pad4(rows).max(4),
            bufs: vec![buf],
            cols,
            copies,
            models,
        })
    }

    /// The vec4 from one model's matrix to the next's in a copy (0 for one model).
    pub(crate) fn model_stride(&self) -> u32 {
        match self.models {
            0 | 1 => 0,
            _ => (self.band_rows * pad4(self.cols) / 4) as u32,
        }
    }

    /// `(row0, row_end)` of each band, in padded rows.
    pub(crate) fn bands(&self) -> Vec<(usize, usize)> {
        (self.bufs.iter())
            .enumerate()
            .map(|(j, b)| {
                let r0 = j * self.band_rows;
                (
                    r0,
                    r0 + b.size() as usize / 4 / pad4(self.cols) / self.copies / self.models.max(1),
                )
            })
            .collect()
    }

    /// The whole padded matrix (the first copy).
    pub(crate) async fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        Ok(self.read_copies(ctx).await?.swap_remove(0))
    }

    /// Every copy, each the whole padded matrix.
    pub(crate) async fn read_copies(&self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); self.copies];
        for b in &self.bufs {
            let words = ctx.read_f32(b, b.size()).await?;
            for (copy, part) in out.iter_mut().zip(words.chunks(words.len() / self.copies)) {
                copy.extend_from_slice(part);
            }
        }
        Ok(out)
    }

    /// Overwrite every copy, each with the whole padded matrix.
    pub(crate) fn write_copies(&self, ctx: &GpuContext, padded: &[Vec<f32>]) {
        debug_assert_eq!(padded.len(), self.copies);
        let mut at = 0;
        for b in &self.bufs {
            let n = b.size() as usize / 4 / self.copies;
            let band: Vec<f32> = (padded.iter())
                .flat_map(|p| p[at..at + n].iter().copied())
                .collect();
            ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(&band));
            at += n;
        }
    }
}

pub(crate) fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, v: &T) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(v),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// The dataset's `[rows, cols]` x or y resident on the GPU: in the texels layout an rgba32float
/// 2D-array texture of `layer_rows` rows per layer (the matrix layout in each), so that it may have
/// more rows than a texture may be high; in the buffer layout one storage buffer. A clone is
/// another handle to the same memory (the models of a sweep on one dataset share it).
#[derive(Clone)]
pub(crate) struct DataArray {
    pub(crate) storage: Storage,
    pub(crate) layer_rows: usize,
}

/// Upload a `[rows, cols]` row-major matrix as a [`DataArray`] of `layout` (in layers of at most
/// `max_texture_dimension_2d` rows for texels).
pub(crate) fn data_array(
    ctx: &GpuContext,
    layout: Layout,
    label: &str,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<DataArray> {
    if layout == Layout::Buffer {
        let padded = to_padded(rows, cols, data, 0.0);
        let buf = storage(ctx, label, padded.len(), Some(&padded))?;
        return Ok(DataArray {
            storage: Storage::Buffer(buf),
            layer_rows: rows,
        });
    }
    let l = &ctx.limits;
    let max = l.max_texture_dimension_2d as usize;
    let width = pad4(cols) / 4;
    let layer_rows = rows.min(max);
    let layers = rows.div_ceil(layer_rows);
    if width > max || layers > l.max_texture_array_layers as usize {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: format!("{layers} layers of {width}x{layer_rows} texels"),
            limit: "max_texture_array_layers and max_texture_dimension_2d",
            allowed: format!("{} layers of {max}x{max}", l.max_texture_array_layers),
        });
    }
    let size = wgpu::Extent3d {
        width: width as u32,
        height: layer_rows as u32,
        depth_or_array_layers: layers as u32,
    };
    let texture = matrix_texture(ctx, label, size, wgpu::TextureUsages::empty());
    // The matrix layout, with zero rows up to the end of the last layer.
    let mut padded = to_padded(rows, cols, data, 0.0);
    padded.resize(layers * layer_rows * pad4(cols), 0.0);
    write_texels(ctx, &texture, &padded, size);
    let view = texture.create_view(&wgpu::TextureViewDescriptor {
        dimension: Some(wgpu::TextureViewDimension::D2Array),
        ..Default::default()
    });
    Ok(DataArray {
        storage: Storage::Texture { texture, view },
        layer_rows,
    })
}

//! The one place that builds every kernel's pipelines from the composed shaders (`sources`).
//! Pipelines are cached by (kernel, layout, override constants) and built on first use.
//!
//! A kernel that reads or writes matrices is one body (`shaders/<op>.wgsl`) behind a prelude per
//! memory layout (`shaders/layout/<layout>/<op>.wgsl`) that declares the matrices and the few
//! functions the body reads and writes them through; [`KernelModule`] is one such composition compiled.

use super::layout::Layout;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

pub mod bias_update;
pub mod cross_entropy;
pub mod gather;
pub mod loss_reduce;
pub mod matmul;
pub mod matmul_naive;
pub mod optimizer;
mod sources;

pub use matmul::{Acc, Act, Block, MatmulKey, Mode};
pub use optimizer::{Opt, StepState, Update};
pub use sources::*;

/// The first of the two bindings `shaders/optimizer.wgsl` declares (the optimizer's state and the
/// step counters), the same in every kernel that includes it.
pub const OPT_BINDING: u32 = 7;

/// The format of every matrix in the texels layout: one texel holds 4 consecutive elements of a
/// row (see `shaders/layout/texels/matmul.wgsl`).
pub const MATRIX_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

/// The binding types of a matrix in a layout: read by the kernel, or written (and, in the buffer
/// layout, read back: C of an in-place update).
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// A layout entry for matrix binding `binding` of `layout` (a 2D texture, or a 2D-array one with
/// `array`, in the texels layout; a storage buffer in the buffer layout).
fn matrix_entry(
    layout: Layout,
    binding: u32,
    access: Access,
    array: bool,
) -> wgpu::BindGroupLayoutEntry {
    match layout {
        Layout::Texels => wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::StorageTexture {
                access: match access {
                    Access::Read => wgpu::StorageTextureAccess::ReadOnly,
                    Access::Write => wgpu::StorageTextureAccess::WriteOnly,
                },
                format: MATRIX_FORMAT,
                view_dimension: if array {
                    wgpu::TextureViewDimension::D2Array
                } else {
                    wgpu::TextureViewDimension::D2
                },
            },
            count: None,
        },
        Layout::Buffer => entry(
            binding,
            match access {
                Access::Read => READ,
                Access::Write => RW,
            },
        ),
    }
}

fn entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// The compute pipeline of `entry` in `module`, its override constants set to `constants`.
fn pipeline(
    device: &wgpu::Device,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}

const UNIFORM: wgpu::BufferBindingType = wgpu::BufferBindingType::Uniform;
const READ: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: true };
const RW: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: false };

/// Whether shaders get the bounds checks and loop guards that wgpu injects by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// The default: every storage index clamped, every loop bounded. On a real GPU an indexing
    /// bug then reads a wrong (clamped) element, which the parity tests catch, instead of hanging
    /// the device or corrupting other memory.
    On,
    /// Without them, on CPU implementations only (lavapipe, SwiftShader), where a fault is an
    /// ordinary process crash and the checks cost: the small products ran ~30% faster without
    /// them on lavapipe (benches/README.md). Chosen in [`Checks::for_adapter`].
    Off,
}

impl Checks {
    /// Off on adapters of type Cpu, on everywhere else.
    pub fn for_adapter(device_type: wgpu::DeviceType) -> Self {
        if device_type == wgpu::DeviceType::Cpu {
            Checks::Off
        } else {
            Checks::On
        }
    }
}

fn module(device: &wgpu::Device, label: &str, source: &str, checks: Checks) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    match checks {
        Checks::On => device.create_shader_module(desc),
        // SAFETY: every index the kernels form is in range by construction: rows and columns are
        // clamped to the last 4-block (`min(r, m - 4)` in matmul.wgsl), K is walked in steps of 4
        // up to its padded size, stores are guarded by `row < row_end && c4 < n / 4`, loops are
        // bounded by the sizes of the bound resources (`k_end`, `g_rows`, `arrayLength`), and the
        // host sizes every texture and buffer as the padded shapes in the uniforms (see
        // `matmul_dispatch`). Used on CPU adapters only (`Checks::for_adapter`).
        Checks::Off => unsafe {
            device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        },
    }
}

/// One kernel composed for one layout: its module, bind group layout and pipeline layout.
pub struct KernelModule {
    module: wgpu::ShaderModule,
    pub bind_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

impl KernelModule {
    fn new(
        device: &wgpu::Device,
        label: &str,
        source: &str,
        checks: Checks,
        entries: &[wgpu::BindGroupLayoutEntry],
    ) -> Self {
        let module = module(device, label, source, checks);
        let bind_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&bind_layout)],
            immediate_size: 0,
        });
        KernelModule {
            module,
            bind_layout,
            pipeline_layout,
        }
    }

    fn pipeline(
        &self,
        device: &wgpu::Device,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        pipeline(
            device,
            &self.pipeline_layout,
            &self.module,
            entry,
            constants,
        )
    }
}

/// The kernels that touch matrices, composed for one layout.
pub struct LayoutKernels {
    pub matmul: KernelModule,
    pub bias_update: KernelModule,
    pub gather: KernelModule,
    /// `gather`: a mini-batch's rows from the dataset resident on the GPU.
    pub gather_pipeline: wgpu::ComputePipeline,
    pub cross_entropy: KernelModule,
    /// `cross_entropy` by [ADVANCE][ADVANCE_SHARED] (see `Kernels::loss_reduce`), and without
    /// COUNT (a band's partial sum).
    pub cross_entropy_pipelines: [[wgpu::ComputePipeline; 2]; 2],
    pub cross_entropy_partial: wgpu::ComputePipeline,
    /// Bound where a matmul variant does not read its `aux` matrix.
    pub dummy_matrix: DummyMatrix,
}

/// What stands in for an unused matrix binding.
pub enum DummyMatrix {
    Texture(wgpu::TextureView),
    Buffer(wgpu::Buffer),
}

impl DummyMatrix {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            DummyMatrix::Texture(v) => wgpu::BindingResource::TextureView(v),
            DummyMatrix::Buffer(b) => b.as_entire_binding(),
        }
    }
}

impl LayoutKernels {
    fn new(device: &wgpu::Device, layout: Layout, checks: Checks, sources: &Sources) -> Self {
        use Access::{Read, Write};
        let m = |binding, access| matrix_entry(layout, binding, access, false);
        let optimizer = [entry(OPT_BINDING, RW), entry(OPT_BINDING + 1, READ)];
        let source = |stem: &str| sources.get(&format!("{stem} {}", layout.name()));
        let (matmul_src, bias_src, gather_src, ce_src) = (
            source("matmul"),
            source("bias_update"),
            source("gather"),
            source("cross_entropy"),
        );
        let mut entries = vec![
            entry(0, UNIFORM),
            m(1, Read),
            m(2, Read),
            m(3, Write),
            m(4, Read),
            entry(5, RW),
            entry(6, READ),
        ];
        entries.extend(optimizer);
        let matmul = KernelModule::new(device, "matmul", matmul_src, checks, &entries);
        let mut entries = vec![entry(0, UNIFORM), m(1, Read), entry(2, RW), entry(3, RW)];
        entries.extend(optimizer);
        let bias_update = KernelModule::new(device, "bias_update", bias_src, checks, &entries);
        let entries = [
            entry(0, UNIFORM),
            matrix_entry(layout, 1, Read, true),
            matrix_entry(layout, 2, Read, true),
            m(3, Write),
            m(4, Write),
            entry(5, READ),
            entry(6, READ),
        ];
        let gather = KernelModule::new(device, "gather", gather_src, checks, &entries);
        let gather_pipeline = gather.pipeline(device, "gather", &[]);
        let mut entries = loss_reduce::entries().to_vec();
        entries.extend([m(4, Read), m(5, Write)]);
        let cross_entropy = KernelModule::new(device, "cross_entropy", ce_src, checks, &entries);
        let (cross_entropy_pipelines, cross_entropy_partial) =
            loss_reduce::pipelines(device, &cross_entropy, "cross_entropy");
        let dummy_matrix = match layout {
            Layout::Texels => DummyMatrix::Texture(
                device
                    .create_texture(&wgpu::TextureDescriptor {
                        label: Some("unused matrix"),
                        size: wgpu::Extent3d {
                            width: 1,
                            height: 1,
                            depth_or_array_layers: 1,
                        },
                        mip_level_count: 1,
                        sample_count: 1,
                        dimension: wgpu::TextureDimension::D2,
                        format: MATRIX_FORMAT,
                        usage: wgpu::TextureUsages::STORAGE_BINDING,
                        view_formats: &[],
                    })
                    .create_view(&Default::default()),
            ),
            Layout::Buffer => DummyMatrix::Buffer(dummy_buffer(device, "unused matrix")),
        };
        LayoutKernels {
            matmul,
            bias_update,
            gather,
            gather_pipeline,
            cross_entropy,
            cross_entropy_pipelines,
            cross_entropy_partial,
            dummy_matrix,
        }
    }
}

fn dummy_buffer(device: &wgpu::Device, label: &str) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Pipelines (or anything cloned out) built on first use, by key: the one cache of every kernel
/// compiled per variant.
pub struct Cache<K, V = wgpu::ComputePipeline>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache(Mutex::default())
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    /// The value of `key`, built by `build` the first time.
    pub fn get(&self, key: K, build: impl FnOnce() -> V) -> V {
        // A panic while building leaves the map as it was: keep using it.
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key).or_insert_with(build).clone()
    }
}

/// A `bias_update` variant: layout, STORE, OPT, ACC_IN and ACC_OUT.
type BiasKey = (Layout, bool, Opt, Acc);

/// Shader modules, layouts and the pipeline caches of one device.
pub struct Kernels {
    /// Per layout (`Layout as usize`); None where the adapter cannot run it (`missing` says why).
    layouts: [Option<LayoutKernels>; 2],
    missing: [Option<String>; 2],
    matmul_cache: Cache<MatmulKey>,
    /// Split-K's second pass, by the product's key.
    reduce_cache: Cache<MatmulKey>,
    pub loss_reduce_layout: wgpu::BindGroupLayout,
    /// `loss_reduce` by [ADVANCE][ADVANCE_SHARED] (the optimizer's step counters, and the shared
    /// layer's).
    loss_reduce: [[wgpu::ComputePipeline; 2]; 2],
    /// `loss_reduce` without COUNT: a band's partial sum into its slot.
    pub loss_partial: wgpu::ComputePipeline,
    /// `bias_update` by (layout, STORE, OPT, ACC_IN and ACC_OUT), built on first use.
    bias_cache: Cache<BiasKey>,
    /// `matmul_naive` (shaders/matmul_naive.wgsl), the bench's reference kernel, built on first
    /// use.
    naive: Cache<(), (wgpu::BindGroupLayout, wgpu::ComputePipeline)>,
    pub checks: Checks,
    /// What the kernels were compiled from (`matmul_naive` is compiled on first use).
    pub sources: &'static Sources,
    /// Bound where a kernel variant does not use its `aux_out` (write) binding.
    pub dummy_rw: wgpu::Buffer,
    /// Bound where a matmul variant does not add a bias.
    pub dummy_bias: wgpu::Buffer,
    /// Bound where an update keeps no optimizer state.
    pub dummy_opt: wgpu::Buffer,
}

impl Kernels {
    /// The kernels of every layout the adapter can run: `missing[layout]` is None, or what the
    /// adapter lacks for it.
    /// A fresh cache of the same kernels (the same sources, checks and layouts) on `device`.
    pub fn fresh(&self, device: &wgpu::Device) -> Self {
        Kernels::new(device, self.checks, self.missing.clone(), self.sources)
    }

    pub fn new(
        device: &wgpu::Device,
        checks: Checks,
        missing: [Option<String>; 2],
        sources: &'static Sources,
    ) -> Self {
        let layouts = Layout::ALL.map(|l| {
            missing[l as usize]
                .is_none()
                .then(|| LayoutKernels::new(device, l, checks, sources))
        });
        let reduce = KernelModule::new(
            device,
            "loss_reduce",
            sources.get("loss_reduce"),
            checks,
            &loss_reduce::entries(),
        );
        let (loss_reduce, loss_partial) = loss_reduce::pipelines(device, &reduce, "loss_reduce");
        Kernels {
            layouts,
            missing,
            matmul_cache: Cache::default(),
            reduce_cache: Cache::default(),
            loss_reduce_layout: reduce.bind_layout,
            loss_reduce,
            loss_partial,
            bias_cache: Cache::default(),
            naive: Cache::default(),
            checks,
            sources,
            dummy_rw: dummy_buffer(device, "unused aux_out"),
            dummy_bias: dummy_buffer(device, "unused bias"),
            dummy_opt: dummy_buffer(device, "unused optimizer state"),
        }
    }

    /// The kernels of `layout`, or what this adapter lacks to run it.
    pub fn layout(&self, layout: Layout) -> Result<&LayoutKernels> {
        self.layouts[layout as usize].as_ref().ok_or_else(|| {
            let why = self.missing[layout as usize].clone().unwrap_or_default();
            Error::Device(format!(
                "this adapter cannot run the {} layout: {why}",
                layout.name()
            ))
        })
    }

    /// Whether this adapter can run `layout`.
    pub fn supports(&self, layout: Layout) -> bool {
        self.layouts[layout as usize].is_some()
    }

    fn kernels_of(&self, layout: Layout) -> &LayoutKernels {
        // Every matrix of a layout was allocated after `layout()` said yes: see `memory::matrix`.
        self.layouts[layout as usize]
            .as_ref()
            .expect("a matrix of a layout the adapter runs")
    }

    /// `loss_reduce`, advancing the optimizer's step counters or not, and the shared layer's.
    pub fn loss_reduce(&self, advance: bool, advance_shared: bool) -> wgpu::ComputePipeline {
        self.loss_reduce[advance as usize][advance_shared as usize].clone()
    }

    /// `cross_entropy` in `layout` (see [`Kernels::loss_reduce`]; `None`: a band's partial sum)
    /// and its bind group layout.
    pub fn cross_entropy(
        &self,
        layout: Layout,
        advance: Option<(bool, bool)>,
    ) -> (&wgpu::BindGroupLayout, wgpu::ComputePipeline) {
        let k = self.kernels_of(layout);
        let pipeline = match advance {
            Some((a, s)) => k.cross_entropy_pipelines[a as usize][s as usize].clone(),
            None => k.cross_entropy_partial.clone(),
        };
        (&k.cross_entropy.bind_layout, pipeline)
    }

    /// `bias_update` with the optimizer step `opt`, or (`store`) storing the gradient alone,
    /// summing over a shared layer's uses by `acc`.
    pub fn bias_update(
        &self,
        device: &wgpu::Device,
        layout: Layout,
        store: bool,
        opt: Opt,
        acc: Acc,
    ) -> wgpu::ComputePipeline {
        self.bias_cache.get((layout, store, opt, acc), || {
            let constants = bias_update::constants(store, opt, acc);
            let family = &self.kernels_of(layout).bias_update;
            family.pipeline(device, "bias_update", &constants)
        })
    }

    /// The bind group layout of `bias_update` in `layout`.
    pub fn bias_update_layout(&self, layout: Layout) -> &wgpu::BindGroupLayout {
        &self.kernels_of(layout).bias_update.bind_layout
    }

    /// The bind group layout of the matmul kernel in `layout`.
    pub fn matmul_layout(&self, layout: Layout) -> &wgpu::BindGroupLayout {
        &self.kernels_of(layout).matmul.bind_layout
    }

    /// What to bind for a matrix a kernel of `layout` does not read.
    pub fn dummy_matrix(&self, layout: Layout) -> wgpu::BindingResource<'_> {
        self.kernels_of(layout).dummy_matrix.binding()
    }

    /// `gather` in `layout` and its bind group layout.
    pub fn gather(&self, layout: Layout) -> (&wgpu::BindGroupLayout, wgpu::ComputePipeline) {
        let k = self.kernels_of(layout);
        (&k.gather.bind_layout, k.gather_pipeline.clone())
    }

    /// The layout and pipeline of `matmul_naive`, compiled on first use.
    pub fn naive(&self, device: &wgpu::Device) -> (wgpu::BindGroupLayout, wgpu::ComputePipeline) {
        self.naive.get((), || {
            let family = KernelModule::new(
                device,
                "matmul_naive",
                self.sources.get("matmul_naive"),
                self.checks,
                &matmul_naive::entries(),
            );
            let p = family.pipeline(device, "matmul_naive", &[]);
            (family.bind_layout, p)
        })
    }

    /// The second pass of split-K (`matmul_splitk_reduce`, buffer layout) with `key`'s
    /// epilogue, compiled on first use.
    pub fn matmul_splitk_reduce(
        &self,
        device: &wgpu::Device,
        key: MatmulKey,
    ) -> wgpu::ComputePipeline {
        self.reduce_cache.get(key.pipeline(), || {
            let family = &self.kernels_of(key.layout).matmul;
            family.pipeline(device, "matmul_splitk_reduce", &matmul::constants(key))
        })
    }

    /// The matmul pipeline for `key`, compiled on first use.
    pub fn matmul(&self, device: &wgpu::Device, key: MatmulKey) -> wgpu::ComputePipeline {
        self.matmul_cache.get(key.pipeline(), || {
            let family = &self.kernels_of(key.layout).matmul;
            family.pipeline(device, key.block.entry_point(), &matmul::constants(key))
        })
    }
}

#[cfg(test)]
mod tests;

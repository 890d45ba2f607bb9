//! The one place that loads every shader (embedded at compile time) and builds its pipelines.
//! Pipelines are cached by (kernel, override constants) and built on first use.

use std::collections::HashMap;
use std::sync::Mutex;

/// `shaders/optimizer.wgsl` is put in front of the two kernels that update parameters.
pub const MATMUL_WGSL: &str = concat!(
    include_str!("../../../shaders/optimizer.wgsl"),
    include_str!("../../../shaders/matmul.wgsl")
);
pub const MATMUL_NAIVE_WGSL: &str = include_str!("../../../shaders/matmul_naive.wgsl");
pub const LOSS_REDUCE_WGSL: &str = include_str!("../../../shaders/loss_reduce.wgsl");
pub const GATHER_WGSL: &str = include_str!("../../../shaders/gather.wgsl");
pub const BIAS_UPDATE_WGSL: &str = concat!(
    include_str!("../../../shaders/optimizer.wgsl"),
    include_str!("../../../shaders/bias_update.wgsl")
);

/// The first of the three bindings `shaders/optimizer.wgsl` declares (the optimizer's two state
/// buffers and the step counters), the same in every kernel that includes it.
pub const OPT_BINDING: u32 = 7;

/// The format of every matrix on the GPU: one texel holds 4 consecutive elements of a row (see
/// `shaders/matmul.wgsl`).
pub const MATRIX_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

pub mod bias_update;
pub mod gather;
pub mod loss_reduce;
pub mod matmul;
pub mod matmul_naive;
pub mod optimizer;

pub use matmul::{Acc, Block, MatmulKey, Mode};
pub use optimizer::Opt;

/// Shader modules, layouts and the pipeline cache of one device.
pub struct Kernels {
    matmul_module: wgpu::ShaderModule,
    pub matmul_layout: wgpu::BindGroupLayout,
    matmul_pipeline_layout: wgpu::PipelineLayout,
    matmul_cache: Mutex<HashMap<MatmulKey, wgpu::ComputePipeline>>,
    pub loss_reduce_layout: wgpu::BindGroupLayout,
    /// `loss_reduce` by [ADVANCE][ADVANCE_SHARED] (the optimizer's step counters, and the shared
    /// layer's).
    loss_reduce: [[wgpu::ComputePipeline; 2]; 2],
    pub bias_update_layout: wgpu::BindGroupLayout,
    bias_pipeline_layout: wgpu::PipelineLayout,
    bias_module: wgpu::ShaderModule,
    /// `bias_update` by (STORE, OPT, ACC_IN and ACC_OUT), built on first use.
    bias_cache: Mutex<HashMap<(bool, Opt, Acc), wgpu::ComputePipeline>>,
    /// `matmul_naive` (shaders/matmul_naive.wgsl), the bench's reference kernel, built on first
    /// use.
    naive: Mutex<Option<(wgpu::BindGroupLayout, wgpu::ComputePipeline)>>,
    pub gather_layout: wgpu::BindGroupLayout,
    /// `gather`: a mini-batch's rows from the dataset resident on the GPU.
    pub gather: wgpu::ComputePipeline,
    /// Bound where a kernel variant does not use its `aux` (read) or `aux_out` (write) binding.
    pub dummy_read: wgpu::TextureView,
    pub dummy_rw: wgpu::Buffer,
    /// Bound where a matmul variant does not add a bias.
    pub dummy_bias: wgpu::Buffer,
    /// Bound where an update keeps no optimizer state (first and second buffer).
    pub dummy_opt: [wgpu::Buffer; 2],
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

fn texture_entry(binding: u32, access: wgpu::StorageTextureAccess) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::StorageTexture {
            access,
            format: MATRIX_FORMAT,
            view_dimension: wgpu::TextureViewDimension::D2,
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

const TEX_READ: wgpu::StorageTextureAccess = wgpu::StorageTextureAccess::ReadOnly;
const TEX_WRITE: wgpu::StorageTextureAccess = wgpu::StorageTextureAccess::WriteOnly;
const UNIFORM: wgpu::BufferBindingType = wgpu::BufferBindingType::Uniform;
const READ: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: true };
const RW: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: false };

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        // SAFETY: every index the matmul kernel forms is in range by construction: rows and
        // columns are clamped to the last 4-block (`min(r, m - 4)`), K is walked in steps of 4 up to
        // its padded size, and stores are guarded by `row < m && c4 < n / 4`; the host sizes every
        // texture and buffer as the padded shapes in the params (see `matmul_dispatch`). Without
        // the injected bounds checks and loop counters the small products ran ~30% faster on
        // lavapipe (benches/README.md).
        let matmul_module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some("matmul"),
                    source: wgpu::ShaderSource::Wgsl(MATMUL_WGSL.into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let matmul_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("matmul"),
            entries: &[
                entry(0, UNIFORM),
                texture_entry(1, TEX_READ),
                texture_entry(2, TEX_READ),
                texture_entry(3, TEX_WRITE),
                texture_entry(4, TEX_READ),
                entry(5, RW),
                entry(6, READ),
                entry(OPT_BINDING, RW),
                entry(OPT_BINDING + 1, RW),
                entry(OPT_BINDING + 2, READ),
            ],
        });
        let matmul_pipeline_layout =
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("matmul"),
                bind_group_layouts: &[Some(&matmul_layout)],
                immediate_size: 0,
            });

        let reduce_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("loss_reduce"),
            source: wgpu::ShaderSource::Wgsl(LOSS_REDUCE_WGSL.into()),
        });
        let loss_reduce_layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("loss_reduce"),
                entries: &[
                    entry(0, UNIFORM),
                    entry(1, READ),
                    entry(2, RW),
                    entry(3, RW),
                ],
            });
        let reduce_pipeline_layout =
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("loss_reduce"),
                bind_group_layouts: &[Some(&loss_reduce_layout)],
                immediate_size: 0,
            });
        let loss_reduce = [false, true].map(|advance| {
            [false, true].map(|shared| {
                let constants = [
                    ("ADVANCE", advance as u8 as f64),
                    ("ADVANCE_SHARED", shared as u8 as f64),
                ];
                let (layout, module) = (&reduce_pipeline_layout, &reduce_module);
                pipeline(device, layout, module, "loss_reduce", &constants)
            })
        });

        let bias_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("bias_update"),
            source: wgpu::ShaderSource::Wgsl(BIAS_UPDATE_WGSL.into()),
        });
        let bias_update_layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("bias_update"),
                entries: &[
                    entry(0, UNIFORM),
                    texture_entry(1, TEX_READ),
                    entry(2, RW),
                    entry(3, RW),
                    entry(OPT_BINDING, RW),
                    entry(OPT_BINDING + 1, RW),
                    entry(OPT_BINDING + 2, READ),
                ],
            });
        let bias_pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("bias_update"),
            bind_group_layouts: &[Some(&bias_update_layout)],
            immediate_size: 0,
        });

        let gather_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gather"),
            source: wgpu::ShaderSource::Wgsl(GATHER_WGSL.into()),
        });
        let array_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::StorageTexture {
                access: TEX_READ,
                format: MATRIX_FORMAT,
                view_dimension: wgpu::TextureViewDimension::D2Array,
            },
            count: None,
        };
        let gather_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gather"),
            entries: &[
                entry(0, UNIFORM),
                array_entry(1),
                array_entry(2),
                texture_entry(3, TEX_WRITE),
                texture_entry(4, TEX_WRITE),
                entry(5, READ),
                entry(6, READ),
            ],
        });
        let gather_pipeline_layout =
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("gather"),
                bind_group_layouts: &[Some(&gather_layout)],
                immediate_size: 0,
            });
        let gather = pipeline(
            device,
            &gather_pipeline_layout,
            &gather_module,
            "gather",
            &[],
        );
        let dummy_read = device
            .create_texture(&wgpu::TextureDescriptor {
                label: Some("unused aux"),
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
            .create_view(&Default::default());
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let dummy_rw = dummy("unused aux_out");
        let dummy_bias = dummy("unused bias");
        let dummy_opt = ["unused optimizer state m", "unused optimizer state v"].map(dummy);
        Kernels {
            naive: Mutex::default(),
            gather_layout,
            gather,
            dummy_read,
            dummy_rw,
            dummy_bias,
            dummy_opt,
            matmul_module,
            matmul_layout,
            matmul_pipeline_layout,
            matmul_cache: Mutex::default(),
            loss_reduce_layout,
            loss_reduce,
            bias_update_layout,
            bias_pipeline_layout,
            bias_module,
            bias_cache: Mutex::default(),
        }
    }

    /// `loss_reduce`, advancing the optimizer's step counters or not, and the shared layer's.
    pub fn loss_reduce(&self, advance: bool, advance_shared: bool) -> wgpu::ComputePipeline {
        self.loss_reduce[advance as usize][advance_shared as usize].clone()
    }

    /// `bias_update` with the optimizer step `opt`, or (`store`) storing the gradient alone,
    /// summing over a shared layer's uses by `acc`.
    pub fn bias_update(
        &self,
        device: &wgpu::Device,
        store: bool,
        opt: Opt,
        acc: Acc,
    ) -> wgpu::ComputePipeline {
        let mut cache = self
            .bias_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .entry((store, opt, acc))
            .or_insert_with(|| {
                let constants = [
                    ("STORE", store as u8 as f64),
                    ("OPT", opt as u32 as f64),
                    ("ACC_IN", acc.input as u8 as f64),
                    ("ACC_OUT", acc.output as u8 as f64),
                ];
                let (layout, module) = (&self.bias_pipeline_layout, &self.bias_module);
                pipeline(device, layout, module, "bias_update", &constants)
            })
            .clone()
    }

    /// The layout and pipeline of `matmul_naive`, compiled on first use.
    pub fn naive(&self, device: &wgpu::Device) -> (wgpu::BindGroupLayout, wgpu::ComputePipeline) {
        let mut slot = self
            .naive
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.get_or_insert_with(|| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("matmul_naive"),
                source: wgpu::ShaderSource::Wgsl(MATMUL_NAIVE_WGSL.into()),
            });
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("matmul_naive"),
                entries: &[
                    entry(0, UNIFORM),
                    entry(1, READ),
                    entry(2, READ),
                    entry(3, RW),
                ],
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("matmul_naive"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let p = pipeline(device, &pipeline_layout, &module, "matmul_naive", &[]);
            (layout, p)
        })
        .clone()
    }

    /// The matmul pipeline for `key`, compiled on first use.
    pub fn matmul(&self, device: &wgpu::Device, key: MatmulKey) -> wgpu::ComputePipeline {
        let mut cache = self
            .matmul_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                let constants = [
                    ("TRANS_A", key.trans_a as u8 as f64),
                    ("TRANS_B", key.trans_b as u8 as f64),
                    ("MODE", key.mode as u32 as f64),
                    ("BIAS", key.bias as u8 as f64),
                    ("OPT", key.opt as u32 as f64),
                    ("ACC_IN", key.acc.input as u8 as f64),
                    ("ACC_OUT", key.acc.output as u8 as f64),
                ];
                let (layout, module) = (&self.matmul_pipeline_layout, &self.matmul_module);
                pipeline(device, layout, module, key.block.entry_point(), &constants)
            })
            .clone()
    }
}

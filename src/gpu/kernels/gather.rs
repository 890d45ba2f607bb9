//! `shaders/gather.wgsl`: a mini-batch's rows gathered from the dataset resident on the GPU.

use crate::gpu::kernels::optimizer::COUNTER_MODEL_WORDS;
use crate::gpu::layout::pad4;
use crate::gpu::memory::uniform;
use crate::gpu::net::{Dataset, Net};
use crate::gpu::record::{bind_group, Dispatch};
use crate::gpu::GpuContext;

/// The bindings of `shaders/gather.wgsl` (with its layout prelude) by number (see
/// `matmul::BINDINGS`).
pub const BINDINGS: &[&str] = &["params", "data_x", "data_y", "x", "y", "index", "state"];

/// WGSL member names of [`GatherParams`] and their byte offsets here (checked by reflection).
pub const UNIFORM_FIELDS: &[(&str, usize)] = &[
    ("rows", std::mem::offset_of!(GatherParams, rows)),
    ("batch", std::mem::offset_of!(GatherParams, batch)),
    (
        "padded_rows",
        std::mem::offset_of!(GatherParams, padded_rows),
    ),
    ("layer_rows", std::mem::offset_of!(GatherParams, layer_rows)),
    ("x_cols4", std::mem::offset_of!(GatherParams, x_cols4)),
    ("y_cols4", std::mem::offset_of!(GatherParams, y_cols4)),
    ("sindex", std::mem::offset_of!(GatherParams, sindex)),
    ("sstate", std::mem::offset_of!(GatherParams, sstate)),
    ("sdata", std::mem::offset_of!(GatherParams, sdata)),
    ("_pad0", std::mem::offset_of!(GatherParams, _pad)),
    ("_pad1", std::mem::offset_of!(GatherParams, _pad) + 4),
    ("_pad2", std::mem::offset_of!(GatherParams, _pad) + 8),
];

/// Uniform block of `shaders/gather.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GatherParams {
    pub(crate) rows: u32,
    pub(crate) batch: u32,
    pub(crate) padded_rows: u32,
    pub(crate) layer_rows: u32,
    pub(crate) x_cols4: u32,
    pub(crate) y_cols4: u32,
    /// A sweep's stacked models: entries from one model's rows to the next's in the index,
    /// words from its step counters to the next's, rows from its dataset to the next's (0: one
    /// dataset); 0 for a lone run.
    pub(crate) sindex: u32,
    pub(crate) sstate: u32,
    pub(crate) sdata: u32,
    pub(crate) _pad: [u32; 3],
}

impl Net {
    /// The gather of a step's `rows` rows into x and y.
    pub(crate) fn gather_dispatch(
        &self,
        ctx: &GpuContext,
        data: &Dataset,
        rows: usize,
    ) -> Dispatch {
        let job = &self.job;
        let (x_cols4, y_cols4) = (pad4(job.layers[0]) / 4, pad4(job.layers[job.depth()]) / 4);
        let padded_rows = pad4(job.batch);
        // Stacked models: one gather for all, model z of the grid.
        let models = self.models;
        let per_model = |stride: u32| if models > 1 { stride } else { 0 };
        let params = uniform(
            ctx,
            "gather params",
            &GatherParams {
                rows: rows as u32,
                batch: job.batch as u32,
                padded_rows: padded_rows as u32,
                layer_rows: data.x.layer_rows as u32,
                x_cols4: x_cols4 as u32,
                y_cols4: y_cols4 as u32,
                sindex: per_model(data.index_len as u32),
                sstate: per_model(COUNTER_MODEL_WORDS),
                sdata: per_model(data.model_rows as u32),
                _pad: [0; 3],
            },
        );
        debug_assert_eq!(data.x.layer_rows, data.y.layer_rows);
        let resources = vec![
            params.as_entire_binding(),
            data.x.storage.binding(),
            data.y.storage.binding(),
            self.x.binding(),
            self.y.binding(),
            data.index.as_entire_binding(),
            self.state.as_entire_binding(),
        ];
        let (layout, pipeline) = ctx.kernels.gather(self.x.layout());
        Dispatch {
            label: format!("gather {} {rows} rows", self.x.layout()),
            pipeline,
            bind_group: bind_group(ctx, "gather", layout, resources, None),
            groups: [
                x_cols4.max(y_cols4).div_ceil(64) as u32,
                padded_rows as u32,
                models as u32,
            ],
        }
    }
}

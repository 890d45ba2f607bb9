//! The matrix layout on the GPU: every dimension padded to a multiple of 4 with zeros, so a
//! row is a whole number of vec4 (texels); uploads pad and readbacks strip it.

/// `n` rounded up to a multiple of 4: the padded size of every matrix dimension on the GPU.
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// A row-major `[rows, cols]` matrix in the GPU layout `[pad4(rows), pad4(cols)]`, the new
/// elements set to `fill` (zero for real data; tests poison with NaN).
pub fn to_padded(rows: usize, cols: usize, data: &[f32], fill: f32) -> Vec<f32> {
    let (pr, pc) = (pad4(rows), pad4(cols));
    let mut out = vec![fill; pr * pc];
    for r in 0..rows {
        out[r * pc..r * pc + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
    }
    out
}

/// The `[rows, cols]` matrix inside a padded GPU-layout one.
pub fn from_padded(rows: usize, cols: usize, padded: &[f32]) -> Vec<f32> {
    let pc = pad4(cols);
    (0..rows)
        .flat_map(|r| padded[r * pc..r * pc + cols].iter().copied())
        .collect()
}

pub(crate) fn padding_is_zero(rows: usize, cols: usize, padded: &[f32]) -> bool {
    let pc = pad4(cols);
    padded
        .iter()
        .enumerate()
        .all(|(i, &v)| (i / pc < rows && i % pc < cols) || v == 0.0)
}

/// Where the vec4 of a matrix live on the GPU; one kernel body per op serves both, through the
/// access functions of a prelude per layout (`shaders/layout/<layout>/`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// rgba32float storage textures, a texel per vec4; each weight matrix a pair of textures,
    /// an epoch reading one and its step writing the other. What CPU implementations (lavapipe,
    /// SwiftShader) load fastest.
    Texels = 0,
    /// Row-major vec4 storage buffers, weights updated in place. For real GPUs, whose vec4
    /// buffer loads outrun rgba32float texture loads, and every browser (Firefox and Safari
    /// cannot read rgba32float storage textures).
    Buffer = 1,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Texels, Layout::Buffer];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Texels => "texels",
            Layout::Buffer => "buffer",
        }
    }

    /// The untuned choice: texels on adapters of type Cpu, buffer on every other.
    pub fn for_adapter(device_type: wgpu::DeviceType) -> Self {
        if device_type == wgpu::DeviceType::Cpu {
            Layout::Texels
        } else {
            Layout::Buffer
        }
    }

    /// Whether each weight matrix is a pair (read one, write the other) rather than updated in
    /// place.
    pub fn pairs(self) -> bool {
        self == Layout::Texels
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

//! The loss: its kinds, names, scale and gradient coefficient.

use super::*;

/// The loss of the prediction `p` against the target `y`, over all `N = batch * dL` elements, with
/// `d = p - y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// `Σ d²`, gradient `2d` (the default job).
    #[default]
    Sse,
    /// `Σ d² / N`, gradient `2d / N` (PyTorch's MSELoss).
    Mse,
    /// `½ Σ d²`, gradient `d` (the delta rule).
    HalfSse,
    /// `Σ |d| / N`, gradient `sign(d) / N`, 0 at `d = 0` (PyTorch's L1Loss).
    L1,
    /// PyTorch's CrossEntropyLoss over the rows of the outputs `z` (logits) against target rows
    /// `y` of probabilities (class indices are one-hot rows): per row,
    /// `Σ_j y_j·(lse(z) - z_j)` with `lse(z) = m + ln Σ_j e^(z_j - m)`, `m = max_j z_j`;
    /// the mean over the rows; gradient `(softmax(z)·Σ_j y_j - y) / rows`.
    CrossEntropy,
}

impl Named for Loss {
    const FLAG: &'static str = "--loss";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("sse", Loss::Sse),
        ("mse", Loss::Mse),
        ("half-sse", Loss::HalfSse),
        ("l1", Loss::L1),
        ("cross-entropy", Loss::CrossEntropy),
    ];
}

impl Loss {
    /// What the sum of the per-element values (`d²`, or `|d|` for L1; per row for
    /// cross-entropy) of a `[rows, cols]` output is multiplied by.
    pub fn scale(self, rows: usize, cols: usize) -> f32 {
        match self {
            Loss::Sse => 1.0,
            Loss::HalfSse => 0.5,
            Loss::Mse | Loss::L1 => 1.0 / (rows * cols) as f32,
            Loss::CrossEntropy => 1.0 / rows as f32,
        }
    }

    /// What `d` (or `sign(d)` for L1, `softmax·Σy - y` for cross-entropy) is multiplied by to
    /// give the gradient of a `[rows, cols]` output.
    pub fn grad_coef(self, rows: usize, cols: usize) -> f32 {
        match self {
            Loss::Sse => 2.0,
            Loss::HalfSse => 1.0,
            Loss::Mse => 2.0 / (rows * cols) as f32,
            Loss::L1 => 1.0 / (rows * cols) as f32,
            Loss::CrossEntropy => 1.0 / rows as f32,
        }
    }

    /// Whether the loss treats each output row as a distribution over classes (cross-entropy):
    /// its targets are probability rows (or class indices, made one-hot).
    pub fn is_classification(self) -> bool {
        self == Loss::CrossEntropy
    }

    /// Whether the per-element value is `|d|` (L1) rather than `d²`.
    pub fn is_abs(self) -> bool {
        self == Loss::L1
    }

    pub fn describe(self) -> &'static str {
        match self {
            Loss::Sse => "sum of squared errors",
            Loss::Mse => "mean squared error",
            Loss::HalfSse => "half the sum of squared errors",
            Loss::L1 => "mean absolute error",
            Loss::CrossEntropy => "softmax cross-entropy (mean over rows)",
        }
    }
}

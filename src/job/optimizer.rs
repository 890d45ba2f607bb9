//! The optimizer: its kind and hyperparameters.

use super::*;

/// The optimizer's kind; its hyperparameters live in [`Optimizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// `p -= lr·g`
    #[default]
    Sgd,
    /// PyTorch's SGD with momentum: `buf = μ·buf + g; p -= lr·buf` (`p -= lr·(g + μ·buf)` with
    /// Nesterov).
    Momentum,
    /// PyTorch's Adam: `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
    /// p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`.
    Adam,
    /// PyTorch's AdamW: `p = p·(1 - lr·wd)`, then Adam's step (the decay decoupled from the
    /// gradient).
    AdamW,
}

impl Named for OptimizerKind {
    const FLAG: &'static str = "--optimizer";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("sgd", OptimizerKind::Sgd),
        ("momentum", OptimizerKind::Momentum),
        ("adam", OptimizerKind::Adam),
        ("adamw", OptimizerKind::AdamW),
    ];
}

impl OptimizerKind {
    /// Whether the step is Adam's (with or without decoupled decay).
    pub fn is_adam(self) -> bool {
        matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
    }
}

/// PyTorch's default `weight_decay` of AdamW (0 for the others).
pub const DEFAULT_ADAMW_DECAY: f32 = 0.01;

/// The optimizer and all its hyperparameters (those of other kinds are carried but unused).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Optimizer {
    #[serde(serialize_with = "by_name")]
    pub kind: OptimizerKind,
    pub momentum: f32,
    pub nesterov: bool,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Weight decay: for sgd, momentum and adam PyTorch's L2 form (`g += wd·p` before the step),
    /// for adamw the decoupled one. Applied to every parameter, biases included, as PyTorch does
    /// with one parameter group.
    pub weight_decay: f32,
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl Optimizer {
    /// Check the hyperparameters the kind uses; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let unit = |flag: &'static str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::arg(flag, format!("must be in [0, 1), got {v}")))
            }
        };
        unit("--momentum", self.momentum)?;
        unit("--beta1", self.beta1)?;
        unit("--beta2", self.beta2)?;
        if !self.eps.is_finite() || self.eps <= 0.0 {
            return Err(Error::arg(
                "--eps",
                format!("must be a finite number > 0, got {}", self.eps),
            ));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return Err(Error::arg(
                "--weight-decay",
                format!("must be a finite number >= 0, got {}", self.weight_decay),
            ));
        }
        if self.nesterov && (self.kind != OptimizerKind::Momentum || self.momentum == 0.0) {
            return Err(Error::arg(
                "--nesterov",
                "needs --optimizer momentum with a --momentum above 0",
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let base = self.describe_kind();
        if self.weight_decay == 0.0 {
            return base;
        }
        format!("{base}, weight decay {}", self.weight_decay)
    }

    fn describe_kind(&self) -> String {
        match self.kind {
            OptimizerKind::Sgd => "SGD".into(),
            OptimizerKind::Momentum => format!(
                "SGD{} momentum {}",
                if self.nesterov { " Nesterov" } else { "" },
                self.momentum
            ),
            OptimizerKind::Adam | OptimizerKind::AdamW => format!(
                "{} (betas {}, {}, eps {:e})",
                if self.kind == OptimizerKind::AdamW {
                    "AdamW"
                } else {
                    "Adam"
                },
                self.beta1,
                self.beta2,
                self.eps
            ),
        }
    }
}

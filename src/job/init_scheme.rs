//! How the initial weights are drawn.

use super::*;

/// How the initial weights are drawn (x and y are always standard normal).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum InitScheme {
    /// Standard normal (the default job).
    #[default]
    Normal,
    /// Uniform in ±1/sqrt(fan_in): PyTorch's nn.Linear default.
    Torch,
    /// Glorot/Xavier uniform: ±sqrt(6 / (fan_in + fan_out)).
    Xavier,
    /// He/Kaiming normal for ReLU: standard deviation sqrt(2 / fan_in).
    Kaiming,
    /// Every weight the same value.
    Constant(f32),
}

impl InitScheme {
    pub const FLAG: &'static str = "--init-scheme";
    pub const CHOICES: &'static str = "normal, torch, xavier, kaiming, constant:<value>";

    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "normal" => InitScheme::Normal,
            "torch" => InitScheme::Torch,
            "xavier" => InitScheme::Xavier,
            "kaiming" => InitScheme::Kaiming,
            _ => match t.strip_prefix("constant:") {
                Some(v) => match v.trim().parse::<f32>() {
                    Ok(c) if c.is_finite() => InitScheme::Constant(c),
                    _ => {
                        return Err(Error::arg(
                            Self::FLAG,
                            format!(
                                "`{s}`: constant:<value> needs a finite number, e.g. constant:0.5"
                            ),
                        ))
                    }
                },
                None => {
                    return Err(Error::arg(
                        Self::FLAG,
                        format!("unknown value `{s}`; valid: {}", Self::CHOICES),
                    ))
                }
            },
        })
    }
}

impl fmt::Display for InitScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitScheme::Normal => f.write_str("normal"),
            InitScheme::Torch => f.write_str("torch"),
            InitScheme::Xavier => f.write_str("xavier"),
            InitScheme::Kaiming => f.write_str("kaiming"),
            InitScheme::Constant(c) => write!(f, "constant:{c}"),
        }
    }
}

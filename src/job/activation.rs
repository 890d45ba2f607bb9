//! The activation between layers: its kinds, names and parameters.

use super::*;

/// The function between layers (none after the last), PyTorch's module of the same name. The
/// forward and backward formulas, in f32, are `cpu::activation_forward` and
/// `cpu::activation_backward`, the same operations as `shaders/activation.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// `max(z, 0)` (`nn.ReLU`)
    #[default]
    Relu,
    /// `z` for `z > 0`, else `slope·z` (`nn.LeakyReLU(negative_slope)`, slope >= 0)
    LeakyRelu(f32),
    /// `tanh(z)` (`nn.Tanh`)
    Tanh,
    /// `1 / (1 + e^-z)` (`nn.Sigmoid`)
    Sigmoid,
    /// `z·Φ(z)`, Φ the standard normal CDF through erf (`nn.GELU()`, the exact form)
    Gelu,
    /// The identity: a purely linear net.
    None,
}

/// PyTorch's default `negative_slope` of `nn.LeakyReLU`.
pub const DEFAULT_LEAKY_SLOPE: f32 = 0.01;

impl Activation {
    pub const FLAG: &'static str = "--activation";
    pub const CHOICES: &'static str = "relu, leaky-relu[:SLOPE], tanh, sigmoid, gelu, none";
    /// One of each kind (leaky ReLU with PyTorch's default slope).
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::LeakyRelu(DEFAULT_LEAKY_SLOPE),
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
        Activation::None,
    ];

    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let (name, arg) = match t.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (t.as_str(), None),
        };
        let plain = |a: Activation| match arg {
            None => Ok(a),
            Some(_) => Err(Error::arg(
                Self::FLAG,
                format!(
                    "`{s}`: `{name}` takes no parameter; valid: {}",
                    Self::CHOICES
                ),
            )),
        };
        match name {
            "relu" => plain(Activation::Relu),
            "tanh" => plain(Activation::Tanh),
            "sigmoid" => plain(Activation::Sigmoid),
            "gelu" => plain(Activation::Gelu),
            "none" => plain(Activation::None),
            "leaky-relu" => match arg.map(|a| a.parse::<f32>()) {
                None => Ok(Activation::LeakyRelu(DEFAULT_LEAKY_SLOPE)),
                Some(Ok(v)) if v.is_finite() && v >= 0.0 => Ok(Activation::LeakyRelu(v)),
                Some(_) => Err(Error::arg(
                    Self::FLAG,
                    format!(
                        "`{s}`: SLOPE must be a finite number >= 0 (the backward pass tells \
                         the sides apart by the output's sign), e.g. leaky-relu:0.01"
                    ),
                )),
            },
            _ => Err(Error::arg(
                Self::FLAG,
                format!("unknown value `{s}`; valid: {}", Self::CHOICES),
            )),
        }
    }

    /// The leaky ReLU's slope (0 for the others).
    pub fn slope(self) -> f32 {
        match self {
            Activation::LeakyRelu(s) => s,
            _ => 0.0,
        }
    }

    /// Whether the backward pass needs the activation's input `z` rather than its output: GELU,
    /// whose output does not determine its input. The others take their derivative from the
    /// output (ReLU and leaky ReLU its sign, tanh `1 - a²`, sigmoid `a(1 - a)`).
    pub fn needs_input(self) -> bool {
        self == Activation::Gelu
    }

    pub fn describe(self) -> String {
        match self {
            Activation::Relu => "ReLU".into(),
            Activation::LeakyRelu(s) => format!("leaky ReLU (slope {s})"),
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Gelu => "GELU (erf)".into(),
            Activation::None => "linear (no activation)".into(),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(s) => write!(f, "leaky-relu:{s}"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Gelu => f.write_str("gelu"),
            Activation::None => f.write_str("none"),
        }
    }
}

//! Learning-rate schedules, per optimizer step, as PyTorch's `StepLR`, `CosineAnnealingLR` and
//! `LinearLR` (a warm-up, then the main schedule as `SequentialLR` runs them) compute them. The
//! rate of a step is a pure function of the step's index, computed in f32 here by the same
//! operations, in the same order, as `shaders/schedule.wgsl` computes it on the device from the
//! step counter the GPU keeps: no host round trip, no re-recording, and a resumed run gets the
//! same rates as an uninterrupted one. The cosine is a polynomial of our own (not the WGSL
//! builtin, whose precision WebGPU leaves to the implementation: 2^-11 absolute on Vulkan).

use crate::codes;
use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::fmt;

/// The main schedule.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Schedule {
    /// The learning rate as given.
    #[default]
    Constant,
    /// `lr · gamma^⌊n / every⌋` (PyTorch's `StepLR(step_size=every, gamma)`).
    Step { every: u32, gamma: f32 },
    /// `min_lr + (lr - min_lr) · (1 + cos(π n / t_max)) / 2` (PyTorch's `CosineAnnealingLR`,
    /// whose curve rises again past `t_max`, as it does there).
    Cosine { t_max: u32, min_lr: f32 },
}

/// A linear warm-up over the first `steps` steps, from `start · lr` (PyTorch's
/// `LinearLR(start_factor=start, end_factor=1, total_iters=steps)`); the main schedule then starts
/// from its own step 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    pub steps: u32,
    pub start: f32,
}

/// PyTorch's default `start_factor` of `LinearLR`.
pub const DEFAULT_WARMUP_START: f32 = 1.0 / 3.0;

/// The learning rate of every optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LrSchedule {
    pub main: Schedule,
    pub warmup: Option<Warmup>,
}

/// The largest `T_MAX`: the device reduces the step modulo `2·T_MAX` in 32-bit integers.
pub const MAX_T: u32 = 1 << 30;

/// What `--lr-schedule` accepts.
pub const SCHEDULE_CHOICES: &str = "constant, step:EVERY:GAMMA, cosine:T_MAX[:MIN_LR]";

impl LrSchedule {
    /// Whether every step runs at the base rate.
    pub fn is_constant(&self) -> bool {
        self.main == Schedule::Constant && self.warmup.is_none()
    }

    /// The learning rate of optimizer step `n` (0-based: `n` steps were taken before it) for the
    /// base rate `lr`, in f32 as `scheduled_lr` in `shaders/schedule.wgsl`.
    pub fn lr(&self, lr: f32, n: u32) -> f32 {
        let mut n = n;
        if let Some(w) = self.warmup {
            if n < w.steps {
                return lr * (w.start + (1.0 - w.start) * (n as f32 / w.steps as f32));
            }
            n -= w.steps;
        }
        match self.main {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * powi(gamma, n / every),
            Schedule::Cosine { t_max, min_lr } => {
                min_lr + (lr - min_lr) * (0.5 * (1.0 + cos_pi_ratio(n, t_max)))
            }
        }
    }

    /// The words `shaders/schedule.wgsl` reads for the base rate `lr` (from word 8 of each
    /// counter slot): `[kind, every or t_max, bits of gamma or min_lr, warm-up steps, bits of
    /// warm-up start, bits of lr]`.
    pub fn words(&self, lr: f32) -> [u32; 6] {
        let (kind, a, b) = match self.main {
            Schedule::Constant => (codes::SCHED_CONSTANT, 1, 0),
            Schedule::Step { every, gamma } => (codes::SCHED_STEP, every, gamma.to_bits()),
            Schedule::Cosine { t_max, min_lr } => (codes::SCHED_COSINE, t_max, min_lr.to_bits()),
        };
        let (ws, wstart) = self.warmup.map_or((0, 1.0f32), |w| (w.steps, w.start));
        [kind, a, b, ws, wstart.to_bits(), lr.to_bits()]
    }

    /// Parse `--lr-schedule` and `--warmup` together; the error names the flag and the field.
    pub fn parse(schedule: Option<&str>, warmup: Option<&str>) -> Result<Self> {
        let main = schedule.map_or(Ok(Schedule::Constant), Schedule::parse)?;
        let warmup = warmup.map(Warmup::parse).transpose()?;
        Ok(LrSchedule { main, warmup })
    }

    pub fn describe(&self) -> String {
        let main = match self.main {
            Schedule::Constant => "constant".to_string(),
            Schedule::Step { every, gamma } => format!("x{gamma} every {every} steps"),
            Schedule::Cosine { t_max, min_lr } => format!("cosine over {t_max} steps to {min_lr}"),
        };
        match self.warmup {
            None => main,
            Some(w) => format!(
                "{main}, after a warm-up of {} steps from x{}",
                w.steps, w.start
            ),
        }
    }
}

impl Schedule {
    /// Parse `--lr-schedule`: `constant`, `step:EVERY:GAMMA` or `cosine:T_MAX[:MIN_LR]`.
    pub fn parse(s: &str) -> Result<Schedule> {
        parse_schedule(s)
    }
}

impl Warmup {
    /// Parse `--warmup`: `STEPS[:START_FACTOR]`.
    pub fn parse(s: &str) -> Result<Warmup> {
        parse_warmup(s)
    }
}

fn parse_schedule(s: &str) -> Result<Schedule> {
    const FLAG: &str = "--lr-schedule";
    let t = s.trim().to_ascii_lowercase();
    let parts: Vec<&str> = t.split(':').map(str::trim).collect();
    let field = |i: usize, name: &str| {
        parts.get(i).copied().ok_or_else(|| {
            Error::arg(
                FLAG,
                format!("`{s}` has no {name}; valid: {SCHEDULE_CHOICES}"),
            )
        })
    };
    let too_many = |n: usize| {
        (parts.len() > n).then(|| {
            Error::arg(
                FLAG,
                format!(
                    "`{s}` has {} fields; valid: {SCHEDULE_CHOICES}",
                    parts.len()
                ),
            )
        })
    };
    match parts[0] {
        "constant" => match too_many(1) {
            Some(e) => Err(e),
            None => Ok(Schedule::Constant),
        },
        "step" => {
            if let Some(e) = too_many(3) {
                return Err(e);
            }
            let every = steps(FLAG, s, "EVERY", field(1, "EVERY")?)?;
            let gamma = number(FLAG, s, "GAMMA", field(2, "GAMMA")?)?;
            if gamma <= 0.0 {
                return Err(Error::arg(
                    FLAG,
                    format!("`{s}`: GAMMA must be > 0, got {gamma}"),
                ));
            }
            Ok(Schedule::Step { every, gamma })
        }
        "cosine" => {
            if let Some(e) = too_many(3) {
                return Err(e);
            }
            let t_max = steps(FLAG, s, "T_MAX", field(1, "T_MAX")?)?;
            if t_max > MAX_T {
                return Err(Error::arg(
                    FLAG,
                    format!("`{s}`: T_MAX must be at most {MAX_T}, got {t_max}"),
                ));
            }
            let min_lr = match parts.get(2) {
                Some(v) => number(FLAG, s, "MIN_LR", v)?,
                None => 0.0,
            };
            if min_lr < 0.0 {
                return Err(Error::arg(
                    FLAG,
                    format!("`{s}`: MIN_LR must be >= 0, got {min_lr}"),
                ));
            }
            Ok(Schedule::Cosine { t_max, min_lr })
        }
        _ => Err(Error::arg(
            FLAG,
            format!("unknown schedule `{s}`; valid: {SCHEDULE_CHOICES}"),
        )),
    }
}

fn parse_warmup(s: &str) -> Result<Warmup> {
    const FLAG: &str = "--warmup";
    let parts: Vec<&str> = s.trim().split(':').map(str::trim).collect();
    if parts.len() > 2 {
        return Err(Error::arg(
            FLAG,
            format!("`{s}`: expected STEPS or STEPS:START_FACTOR, e.g. 100 or 100:0.1"),
        ));
    }
    let steps = steps(FLAG, s, "STEPS", parts[0])?;
    let start = match parts.get(1) {
        Some(v) => number(FLAG, s, "START_FACTOR", v)?,
        None => DEFAULT_WARMUP_START,
    };
    if !(start > 0.0 && start <= 1.0) {
        return Err(Error::arg(
            FLAG,
            format!("`{s}`: START_FACTOR must be in (0, 1], got {start}"),
        ));
    }
    Ok(Warmup { steps, start })
}

/// A whole number of steps, at least 1.
fn steps(flag: &'static str, s: &str, name: &str, v: &str) -> Result<u32> {
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::arg(
            flag,
            format!("`{s}`: {name} must be a whole number of steps >= 1, got `{v}`"),
        )),
    }
}

/// A finite number.
fn number(flag: &'static str, s: &str, name: &str, v: &str) -> Result<f32> {
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(Error::arg(
            flag,
            format!("`{s}`: {name} must be a finite number, got `{v}`"),
        )),
    }
}

/// `x^k` by squaring, in f32 (as `powi` in `shaders/schedule.wgsl`).
fn powi(x: f32, k: u32) -> f32 {
    let (mut result, mut base, mut k) = (1.0f32, x, k);
    while k > 0 {
        if k & 1 == 1 {
            result *= base;
        }
        base *= base;
        k >>= 1;
    }
    result
}

/// `cos(π n / t)` in f32: `n` reduced modulo the period `2t` in integers, folded onto
/// `[0, π/2]` by the cosine's symmetries, then a Taylor polynomial to x^14 (truncation error
/// below 1e-10 there). The reduced argument `r` is an f32 quotient (rounded by up to 2^-24
/// relative), so the result is within 2 ulps of 1 plus `π·r·2^-23` of the true cosine: 6e-7 at
/// most (tested against f64).
pub fn cos_pi_ratio(n: u32, t: u32) -> f32 {
    let period = 2 * t as u64;
    let mut r = (n as u64 % period) as f32 / t as f32; // [0, 2)
    if r > 1.0 {
        r = 2.0 - r; // cos(π(2 - r)) = cos(πr)
    }
    let mut sign = 1.0f32;
    if r > 0.5 {
        r = 1.0 - r; // cos(π(1 - r)) = -cos(πr)
        sign = -1.0;
    }
    let x = std::f32::consts::PI * r;
    let x2 = x * x;
    // 1 - x²/2! + x⁴/4! - ... - x¹⁴/14!, by Horner.
    let mut p = -1.0 / 87_178_291_200.0f32;
    p = p * x2 + 1.0 / 479_001_600.0;
    p = p * x2 - 1.0 / 3_628_800.0;
    p = p * x2 + 1.0 / 40_320.0;
    p = p * x2 - 1.0 / 720.0;
    p = p * x2 + 1.0 / 24.0;
    p = p * x2 - 0.5;
    p = p * x2 + 1.0;
    sign * p
}

/// As `--lr-schedule` takes it.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Cosine { t_max, min_lr } => write!(f, "cosine:{t_max}:{min_lr}"),
        }
    }
}

/// As `--warmup` takes it.
impl fmt::Display for Warmup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.steps, self.start)
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.main)?;
        if let Some(w) = self.warmup {
            write!(f, ", warmup:{w}")?;
        }
        Ok(())
    }
}

impl Serialize for LrSchedule {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("lr_schedule", 2)?;
        st.serialize_field("schedule", &self.main.to_string())?;
        st.serialize_field("warmup", &self.warmup.map(|w| w.to_string()))?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_is_within_6e7_of_f64() {
        for t in [1u32, 3, 7, 12, 100, 1000, 99_991] {
            for n in (0..4 * t).step_by((t as usize / 50).max(1)) {
                let want = (std::f64::consts::PI * n as f64 / t as f64).cos();
                let got = cos_pi_ratio(n, t) as f64;
                // 2 ulps of 1.0 in f32, absolute (the cosine is in [-1, 1]), and the rounding
                // of the reduced argument.
                assert!(
                    (got - want).abs() <= 6e-7,
                    "cos(pi {n}/{t}) = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn schedules_follow_pytorch_closed_forms() {
        let s = LrSchedule::parse(Some("step:3:0.5"), None).unwrap();
        let lrs: Vec<f32> = (0..7).map(|n| s.lr(0.8, n)).collect();
        assert_eq!(lrs, [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
        let c = LrSchedule::parse(Some("cosine:4:0.1"), None).unwrap();
        let want = |n: f64| 0.1 + 0.9 * (1.0 + (std::f64::consts::PI * n / 4.0).cos()) / 2.0;
        for n in 0..12 {
            assert!((c.lr(1.0, n) as f64 - want(n as f64)).abs() < 1e-6, "{n}");
        }
        assert_eq!(c.lr(1.0, 4), 0.1, "the minimum at T_MAX");
        let w = LrSchedule::parse(Some("cosine:4"), Some("2:0.25")).unwrap();
        assert_eq!(w.lr(1.0, 0), 0.25);
        assert_eq!(w.lr(1.0, 1), 0.625);
        assert_eq!(w.lr(1.0, 2), 1.0, "the main schedule's step 0");
        assert!((w.lr(1.0, 4) - 0.5).abs() < 1e-7);
        let only = LrSchedule::parse(None, Some("4")).unwrap();
        assert_eq!(only.warmup.unwrap().start, DEFAULT_WARMUP_START);
        assert_eq!(only.lr(2.0, 100), 2.0);
        assert!(LrSchedule::default().is_constant());
        assert_eq!(powi(0.5, 10), 1.0 / 1024.0);
    }

    #[test]
    fn malformed_schedules_name_the_flag_and_field() {
        for (s, field) in [
            ("linear", "valid: constant"),
            ("step", "EVERY"),
            ("step:3", "GAMMA"),
            ("step:0:0.5", "EVERY"),
            ("step:x:0.5", "EVERY"),
            ("step:3:-1", "GAMMA"),
            ("step:3:nan", "GAMMA"),
            ("cosine", "T_MAX"),
            ("cosine:10:-0.1", "MIN_LR"),
            ("cosine:10:0.1:3", "fields"),
            ("constant:1", "fields"),
        ] {
            let e = LrSchedule::parse(Some(s), None).unwrap_err().to_string();
            assert!(e.contains("--lr-schedule") && e.contains(field), "{s}: {e}");
        }
        for (s, field) in [
            ("0", "STEPS"),
            ("-3", "STEPS"),
            ("5:0", "START_FACTOR"),
            ("5:1.5", "START_FACTOR"),
            ("5:1:2", "STEPS:START_FACTOR"),
        ] {
            let e = LrSchedule::parse(None, Some(s)).unwrap_err().to_string();
            assert!(e.contains("--warmup") && e.contains(field), "{s}: {e}");
        }
    }
}

//! A sweep: many variants of one job trained together. The settings that can vary without
//! changing any shape (the learning rate, the seed, the optimizer's hyperparameters, the init
//! scheme, the schedule) each take a list of [`Value`]s; the variants are the cartesian product of
//! the lists ([`Grid`]), each a [`JobSpec`] of its own, trained by a [`SweepSession`] over the
//! devices of all of them ([`Models`]).

pub mod lists;
mod session;

pub use session::{Models, SweepSession};

use crate::error::{Error, Result};
use crate::job::InitScheme;
use crate::schedule::{Schedule, Warmup};
use crate::spec::{JobSpec, OptimizerSpec, ScheduleSpec};

/// The most variants a sweep trains unless told otherwise (`--max-variants`).
pub const MAX_VARIANTS: usize = 4096;

/// Refuse a sweep of `variants` variants of `job` (variant 0: they share every shape) whose
/// datasets and parameters alone, held twice per variant (its drawn state, and the CPU path's or
/// the device's copy that trains), would take more than `available` bytes of host memory (the
/// machine's, where known: [`available_memory`]); naming both, before any other variant is drawn.
/// What a path holds beyond that (the optimizer's state, activations, a stack's copies) is left
/// out, so a sweep refused here could not have run.
pub fn check_memory(job: &crate::job::Job, variants: usize, available: Option<u64>) -> Result<()> {
    let (Some(each), Some(available)) = (job.host_bytes(), available) else {
        return Ok(());
    };
    let need = each.saturating_mul(2).saturating_mul(variants as u64);
    if need <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(Error::arg(
        "--max-variants",
        format!(
            "{variants} variants would need at least {:.2} GiB of host memory (each its dataset \
             and parameters, {:.1} MiB, twice: its state and its trained copy), more than the \
             {:.2} GiB this machine has available now: fewer variants, or a smaller net or \
             dataset",
            gib(need),
            each as f64 / (1u64 << 20) as f64,
            gib(available)
        ),
    ))
}

/// The host memory available now (Linux's `MemAvailable`), where the system says.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One value of a setting a sweep can vary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Lr(f32),
    Seed(u64),
    WeightDecay(f32),
    Momentum(f32),
    InitScheme(InitScheme),
    Beta1(f32),
    Beta2(f32),
    Eps(f32),
    LrSchedule(Schedule),
    Warmup(Warmup),
}

impl Value {
    /// The flag that sets it.
    pub fn flag(&self) -> &'static str {
        match self {
            Value::Lr(_) => "--lr",
            Value::Seed(_) => "--seed",
            Value::WeightDecay(_) => "--weight-decay",
            Value::Momentum(_) => "--momentum",
            Value::InitScheme(_) => "--init-scheme",
            Value::Beta1(_) => "--beta1",
            Value::Beta2(_) => "--beta2",
            Value::Eps(_) => "--eps",
            Value::LrSchedule(_) => "--lr-schedule",
            Value::Warmup(_) => "--warmup",
        }
    }

    /// Its name in labels and in `sweep.json`: the flag without its dashes, `_` for `-`.
    pub fn name(&self) -> String {
        self.flag().trim_start_matches('-').replace('-', "_")
    }

    /// The number of a setting whose values are numbers (all but the seed, the init scheme and
    /// the schedules).
    fn real(&self) -> Option<f32> {
        match *self {
            Value::Lr(v)
            | Value::WeightDecay(v)
            | Value::Momentum(v)
            | Value::Beta1(v)
            | Value::Beta2(v)
            | Value::Eps(v) => Some(v),
            _ => None,
        }
    }

    /// The value as its flag takes it (`1e-3`, `step:100:0.5`, `kaiming`).
    pub fn text(&self) -> String {
        if let Some(v) = self.real() {
            let a = v.abs();
            return match a != 0.0 && !(1e-3..1e4).contains(&a) {
                true => format!("{v:e}"),
                false => format!("{v}"),
            };
        }
        match *self {
            Value::Seed(s) => s.to_string(),
            Value::InitScheme(i) => i.to_string(),
            Value::LrSchedule(s) => s.to_string(),
            Value::Warmup(w) => w.to_string(),
            _ => String::new(),
        }
    }

    /// The value as JSON: a number where it is one, else its text.
    pub fn json(&self) -> serde_json::Value {
        match (self.real(), self) {
            (Some(v), _) => serde_json::json!(v),
            (None, Value::Seed(s)) => serde_json::json!(s),
            _ => serde_json::Value::String(self.text()),
        }
    }

    /// Set it in `spec`.
    pub fn apply(&self, spec: &mut JobSpec) {
        fn opt(spec: &mut JobSpec) -> &mut OptimizerSpec {
            spec.optimizer.get_or_insert_with(OptimizerSpec::default)
        }
        fn sched(spec: &mut JobSpec) -> &mut ScheduleSpec {
            spec.lr_schedule.get_or_insert_with(ScheduleSpec::default)
        }
        match *self {
            Value::Lr(v) => spec.lr = Some(v),
            Value::Seed(s) => spec.seed = Some(s),
            Value::WeightDecay(v) => opt(spec).weight_decay = Some(v),
            Value::Momentum(v) => opt(spec).momentum = Some(v),
            Value::InitScheme(i) => spec.init_scheme = Some(i),
            Value::Beta1(v) => opt(spec).beta1 = Some(v),
            Value::Beta2(v) => opt(spec).beta2 = Some(v),
            Value::Eps(v) => opt(spec).eps = Some(v),
            Value::LrSchedule(s) => sched(spec).schedule = Some(s),
            Value::Warmup(w) => sched(spec).warmup = Some(w),
        }
    }
}

/// The variants of a sweep: one list of values per setting given, in the order given; variant
/// `k` takes the values of `k` written in mixed radix over the lists' lengths, the last list's
/// the fastest to change (`--lr 1,2 --seed 0,1`: (1,0), (1,1), (2,0), (2,1)).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    axes: Vec<Vec<Value>>,
    len: usize,
}

impl Grid {
    /// The grid of `axes` (each a non-empty list of one setting's values), refused past `max`
    /// variants (saying how many it would be) and where a list repeats a value (two identical
    /// variants).
    pub fn new(axes: Vec<Vec<Value>>, max: usize) -> Result<Grid> {
        let mut len = 1usize;
        for axis in &axes {
            let Some(first) = axis.first() else {
                return Err(Error::arg("--max-variants", "a list of values is empty"));
            };
            for (i, v) in axis.iter().enumerate() {
                if axis[..i].contains(v) {
                    return Err(Error::arg(
                        first.flag(),
                        format!("lists `{}` twice: two variants would be the same", v.text()),
                    ));
                }
            }
            len = len.saturating_mul(axis.len());
        }
        if len > max {
            let sizes: Vec<String> = (axes.iter())
                .filter(|a| a.len() > 1)
                .map(|a| format!("{} {}", a[0].flag(), a.len()))
                .collect();
            return Err(Error::arg(
                "--max-variants",
                format!(
                    "the lists make {len} variants ({}), more than the cap of {max}: shorten a \
                     list or raise --max-variants",
                    sizes.join(" x ")
                ),
            ));
        }
        Ok(Grid { axes, len })
    }

    /// How many variants.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every setting's value in variant `k`, one per list.
    pub fn values(&self, k: usize) -> Vec<Value> {
        let mut rest = k;
        let mut out: Vec<Value> = (self.axes.iter().rev())
            .map(|axis| {
                let v = axis[rest % axis.len()];
                rest /= axis.len();
                v
            })
            .collect();
        out.reverse();
        out
    }

    /// The values of variant `k` that differ between variants (those of lists of more than one).
    pub fn varied(&self, k: usize) -> Vec<Value> {
        (self.values(k).into_iter().zip(&self.axes))
            .filter(|(_, axis)| axis.len() > 1)
            .map(|(v, _)| v)
            .collect()
    }

    /// `lr=1e-3 seed=2`: what tells variant `k` from the others (`variant k` if nothing does).
    pub fn label(&self, k: usize) -> String {
        let parts: Vec<String> = (self.varied(k).iter())
            .map(|v| format!("{}={}", v.name(), v.text()))
            .collect();
        match parts.is_empty() {
            true => format!("variant {k}"),
            false => parts.join(" "),
        }
    }

    /// What varies: `lr (3) x seed (4)`, the lists of more than one value in order (`nothing`
    /// when every list has one).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = (self.axes.iter())
            .filter(|a| a.len() > 1)
            .map(|a| format!("{} ({})", a[0].name(), a.len()))
            .collect();
        match parts.is_empty() {
            true => "nothing".into(),
            false => parts.join(" x "),
        }
    }

    /// The job of variant `k`: `base` with its values set.
    pub fn spec(&self, base: &JobSpec, k: usize) -> JobSpec {
        let mut spec = base.clone();
        for v in self.values(k) {
            v.apply(&mut spec);
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_past_the_host_memory_is_refused_naming_both() {
        let job = crate::job::Job::default();
        let each = job.host_bytes().unwrap();
        // 64 variants of the default job: 2 x 64 x its dataset and parameters.
        assert!(check_memory(&job, 64, Some(each * 128)).is_ok());
        assert!(check_memory(&job, 64, None).is_ok());
        let e = check_memory(&job, 64, Some(each * 128 - 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("64 variants would need at least") && e.contains("available now"),
            "{e}"
        );
        assert!(available_memory().is_none_or(|b| b > 0));
    }

    fn grid() -> Grid {
        let lr = vec![Value::Lr(1e-3), Value::Lr(1e-2), Value::Lr(0.5)];
        let seed = vec![Value::Seed(0), Value::Seed(7)];
        let eps = vec![Value::Eps(1e-8)];
        Grid::new(vec![lr, seed, eps], 100).expect("a small grid")
    }

    #[test]
    fn variants_are_the_product_with_the_last_list_fastest() {
        let g = grid();
        assert_eq!(g.len(), 6);
        let all: Vec<Vec<Value>> = (0..6).map(|k| g.values(k)).collect();
        for (k, v) in all.iter().enumerate() {
            assert_eq!(v[0], Value::Lr([1e-3, 1e-2, 0.5][k / 2]));
            assert_eq!(v[1], Value::Seed([0, 7][k % 2]));
            assert_eq!(v[2], Value::Eps(1e-8));
            // Every pair of variants differs.
            assert!(all[..k].iter().all(|o| o != v));
        }
        assert_eq!(g.label(3), "lr=0.01 seed=7");
        assert_eq!(g.describe(), "lr (3) x seed (2)");
        assert_eq!(g.label(4), "lr=0.5 seed=0");
    }

    #[test]
    fn a_variant_spec_sets_each_value_and_keeps_the_rest() {
        let g = grid();
        let base = JobSpec {
            epochs: Some(3),
            ..JobSpec::default()
        };
        let job = g.spec(&base, 5).job().expect("a valid job");
        assert_eq!((job.lr, job.seed, job.epochs), (0.5, 7, 3));
        assert_eq!(job.optimizer.eps, 1e-8);
        let sched = Value::LrSchedule(Schedule::Step {
            every: 10,
            gamma: 0.5,
        });
        let mut spec = JobSpec::default();
        for v in [
            sched,
            Value::Warmup(Warmup {
                steps: 3,
                start: 0.25,
            }),
            Value::WeightDecay(0.1),
            Value::Momentum(0.5),
            Value::Beta1(0.8),
            Value::Beta2(0.9),
            Value::InitScheme(InitScheme::Kaiming),
        ] {
            v.apply(&mut spec);
        }
        let job = spec.job().expect("a valid job");
        assert_eq!(
            job.lr_schedule.main,
            Schedule::Step {
                every: 10,
                gamma: 0.5
            }
        );
        assert_eq!(job.lr_schedule.warmup.map(|w| w.steps), Some(3));
        let o = &job.optimizer;
        assert_eq!(
            (o.weight_decay, o.momentum, o.beta1, o.beta2),
            (0.1, 0.5, 0.8, 0.9)
        );
        assert_eq!(job.init_scheme, InitScheme::Kaiming);
    }

    #[test]
    fn the_cap_and_repeated_values_are_refused_by_flag() {
        let lr: Vec<Value> = (1..=5).map(|i| Value::Lr(i as f32)).collect();
        let seed: Vec<Value> = (0..5).map(Value::Seed).collect();
        let e = Grid::new(vec![lr.clone(), seed], 24)
            .expect_err("25 > 24")
            .to_string();
        assert!(
            e.contains("--max-variants") && e.contains("25 variants"),
            "{e}"
        );
        assert!(e.contains("--lr 5 x --seed 5"), "{e}");
        let twice = vec![Value::Lr(1.0), Value::Lr(2.0), Value::Lr(1.0)];
        let e = Grid::new(vec![twice], 24)
            .expect_err("repeated")
            .to_string();
        assert!(e.contains("--lr") && e.contains("`1` twice"), "{e}");
        assert!(Grid::new(vec![lr], 5).is_ok());
    }
}

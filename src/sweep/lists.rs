//! The lists a sweep varies, parsed once for every caller: the command line's flags (`--lr
//! 1e-3,3e-3`, through clap) and the page's text (`lr=1e-3,3e-3 seed=0,1`, [`Grid::parse`]) take
//! the same parsers, so a value means the same and a bad one gets the same message everywhere.

use super::{Grid, Value};
use crate::error::{Error, Result};
use crate::job::InitScheme;
use crate::schedule::{Schedule, Warmup};

/// A comma-separated list of a setting's values (one value in a training run, the values a
/// sweep trains in `gpu-train sweep`).
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

/// The message of the library's own parsers' errors (the caller adds the flag and the value).
fn message(e: Error) -> String {
    match e {
        Error::InvalidArg { msg, .. } => msg,
        e => e.to_string(),
    }
}

/// The values of `s`, each parsed by `item`; the error names the item (`item 2 of `1e-3,,2` is
/// empty`).
fn list<T>(s: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<List<T>, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let many = parts.len() > 1;
    let at = |i: usize| format!("item {} of `{s}`", i + 1);
    (parts.iter().enumerate())
        .map(|(i, p)| match (p.trim(), many) {
            ("", true) => Err(format!("{} is empty", at(i))),
            ("", false) => Err("no value given".to_string()),
            (t, true) => item(t).map_err(|e| format!("{}: {e}", at(i))),
            (t, false) => item(t),
        })
        .collect::<Result<Vec<T>, String>>()
        .map(List)
}

/// A number (its range is the job's to check).
pub fn real(s: &str) -> Result<f32, String> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| format!("`{s}` is not a number"))
}

/// `--lr`, `--weight-decay`, ...: numbers.
pub fn reals(s: &str) -> Result<List<f32>, String> {
    list(s, real)
}

/// `--seed`: whole numbers.
pub fn seeds(s: &str) -> Result<List<u64>, String> {
    list(s, |t| {
        t.parse::<u64>()
            .map_err(|_| format!("`{t}` is not a whole number"))
    })
}

/// `--init-scheme`.
pub fn init_schemes(s: &str) -> Result<List<InitScheme>, String> {
    list(s, |t| InitScheme::parse(t).map_err(message))
}

/// `--lr-schedule`.
pub fn schedules(s: &str) -> Result<List<Schedule>, String> {
    list(s, |t| Schedule::parse(t).map_err(message))
}

/// `--warmup`.
pub fn warmups(s: &str) -> Result<List<Warmup>, String> {
    list(s, |t| Warmup::parse(t).map_err(message))
}

/// The settings a sweep can vary, by name (as `sweep.json` and [`Value::name`] write them).
pub const NAMES: &[&str] = &[
    "lr",
    "seed",
    "weight_decay",
    "momentum",
    "init_scheme",
    "beta1",
    "beta2",
    "eps",
    "lr_schedule",
    "warmup",
];

impl Value {
    /// The values that `text` lists for the setting `name` (`lr`, or its flag `--lr`; `-` or `_`
    /// alike), parsed as its flag parses them.
    pub fn parse_list(name: &str, text: &str) -> Result<Vec<Value>> {
        let key = name.trim_start_matches('-').replace('-', "_");
        fn each<T: Copy>(
            l: Result<List<T>, String>,
            f: impl Fn(T) -> Value,
        ) -> Result<Vec<Value>, String> {
            l.map(|l| l.0.into_iter().map(f).collect())
        }
        let values = match key.as_str() {
            "lr" => each(reals(text), Value::Lr),
            "seed" => each(seeds(text), Value::Seed),
            "weight_decay" => each(reals(text), Value::WeightDecay),
            "momentum" => each(reals(text), Value::Momentum),
            "init_scheme" => each(init_schemes(text), Value::InitScheme),
            "beta1" => each(reals(text), Value::Beta1),
            "beta2" => each(reals(text), Value::Beta2),
            "eps" => each(reals(text), Value::Eps),
            "lr_schedule" => each(schedules(text), Value::LrSchedule),
            "warmup" => each(warmups(text), Value::Warmup),
            _ => {
                return Err(Error::arg(
                    "sweep",
                    format!(
                        "`{name}` is not a setting a sweep can vary (those are {})",
                        NAMES.join(", ")
                    ),
                ))
            }
        };
        values.map_err(|msg| Error::arg("sweep", format!("{key}: {msg}")))
    }
}

impl Grid {
    /// The grid of `text`: lists of the settings a sweep can vary, `name=v1,v2,...` separated
    /// by spaces (`lr=1e-3,3e-3 seed=0,1`), in the order given; refused past `max` variants, as
    /// [`Grid::new`]. A setting named twice, a word without `=`, and nothing at all are refused,
    /// naming the word.
    pub fn parse(text: &str, max: usize) -> Result<Grid> {
        let mut axes: Vec<Vec<Value>> = Vec::new();
        for word in text.split_whitespace() {
            let Some((name, list)) = word.split_once('=') else {
                return Err(Error::arg(
                    "sweep",
                    format!("`{word}` is not NAME=VALUES (e.g. lr=1e-3,3e-3)"),
                ));
            };
            let values = Value::parse_list(name, list)?;
            if axes.iter().any(|a| a[0].name() == values[0].name()) {
                return Err(Error::arg(
                    "sweep",
                    format!(
                        "`{}` is listed twice: give one list per setting",
                        values[0].name()
                    ),
                ));
            }
            axes.push(values);
        }
        if axes.is_empty() {
            return Err(Error::arg(
                "sweep",
                format!(
                    "no lists: give NAME=VALUES for the settings to vary (e.g. lr=1e-3,3e-3 \
                     seed=0,1; the settings: {})",
                    NAMES.join(", ")
                ),
            ));
        }
        Grid::new(axes, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_make_the_grid_of_the_flags() {
        let g = Grid::parse("lr=1e-3,3e-3  --seed=0,7 weight-decay=0.1", 10).unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(
            g.values(1),
            vec![Value::Lr(1e-3), Value::Seed(7), Value::WeightDecay(0.1)]
        );
        assert_eq!(g.label(2), "lr=0.003 seed=0");
        let g = Grid::parse("lr_schedule=constant,step:2:0.5 warmup=3,4:0.2", 10).unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g.values(3)[1].text(), "4:0.2");
    }

    #[test]
    fn bad_text_names_the_word_and_the_item() {
        let err = |t: &str| Grid::parse(t, 4).unwrap_err().to_string();
        assert!(
            err("lr=1e-3,,2").contains("lr: item 2 of `1e-3,,2` is empty"),
            "{}",
            err("lr=1e-3,,2")
        );
        assert!(err("seed=a").contains("seed: `a` is not a whole number"));
        assert!(err("batch=1,2").contains("`batch` is not a setting a sweep can vary"));
        assert!(err("lr").contains("`lr` is not NAME=VALUES"));
        assert!(err("lr=1 lr=2").contains("`lr` is listed twice"));
        assert!(err("  ").contains("no lists"));
        assert!(err("lr=1,2,3 seed=1,2").contains("6 variants"));
        assert!(err("lr=1,1").contains("lists `1` twice"));
    }
}

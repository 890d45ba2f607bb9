//! The value parsers of the flags: each value parsed into its type once, at the edge; the message
//! says what is wrong with it (clap names the flag and the value).

use crate::error::Error;
use crate::gpu::context::DeviceChoice;
use crate::job::{Activation, Named};

// The lists a sweep varies (and their numbers): one set of parsers for the flags and the page.
pub use crate::sweep::lists::{init_schemes, real, reals, schedules, seeds, warmups, List};

/// The message of the library's own parsers' errors (clap adds the flag and the value).
fn message(e: Error) -> String {
    match e {
        Error::InvalidArg { msg, .. } => msg,
        e => e.to_string(),
    }
}

/// A value of a setting that every variant of a sweep shares: a list there is refused, saying so.
fn one(s: &str) -> Result<&str, String> {
    match s.contains(',') {
        true => Err(format!(
            "`{s}` is a list, but this setting takes one value: it changes the net's shapes, its \
             data or its training's kind, which every variant of a sweep shares, so it cannot \
             vary in a sweep"
        )),
        false => Ok(s),
    }
}

/// A whole number >= 0.
pub fn count(s: &str) -> Result<usize, String> {
    let t = one(s)?.trim();
    t.parse().map_err(|_| {
        let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if digits {
            format!("`{s}` is too large a number")
        } else {
            format!("`{s}` is not a whole number")
        }
    })
}

/// A fraction strictly between 0 and 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "`{s}` must be a fraction between 0 and 1, e.g. 0.2"
        )),
    }
}

/// A family of `verify`'s checks.
pub fn verify_family(s: &str) -> Result<crate::verify::Family, String> {
    crate::verify::Family::parse(s).map_err(message)
}

/// A time in seconds, more than zero.
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "`{s}` must be a number of seconds above 0, e.g. 10"
        )),
    }
}

/// Layer widths, input to output (one value to clap, which takes a `Vec` for many).
#[derive(Debug, Clone, PartialEq)]
pub struct Widths(pub Vec<usize>);

/// Layer widths, comma-separated: `1000,100,10`.
pub fn layers(s: &str) -> Result<Widths, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if p.is_empty() {
            return Err(format!(
                "`{s}` has an empty width; expected comma-separated numbers like 1000,100,10"
            ));
        }
        out.push(p.parse::<usize>().map_err(|_| {
            format!("`{p}` in `{s}` is not a whole number; expected e.g. 1000,100,10")
        })?);
    }
    Ok(Widths(out))
}

/// One of a vocabulary's names (`--loss`, `--optimizer`).
pub fn named<T: Named + Send + Sync>(s: &str) -> Result<T, String> {
    T::parse(one(s)?).map_err(message)
}

/// `--activation NAME[:SLOPE]`.
pub fn activation(s: &str) -> Result<Activation, String> {
    Activation::parse(one(s)?).map_err(message)
}

/// `--shape MxNxK`, each at least 1.
pub fn shape(s: &str) -> Result<(usize, usize, usize), String> {
    let bad = || format!("`{s}` is not MxNxK (e.g. 1024x1024x1024)");
    let v: Vec<usize> = (s.split(['x', 'X']))
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    match v[..] {
        [m, n, k] => Ok((m, n, k)),
        _ => Err(bad()),
    }
}

/// `--device auto|cpu|gpu|INDEX|NAME`.
pub fn device(s: &str) -> Result<DeviceChoice, String> {
    DeviceChoice::parse(s).map_err(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::InitScheme;

    /// Every typed flag reaches the JobSpec as its value (clap's definition and access agree:
    /// a mismatch panics only when the flag is given), and clap's own checks of the
    /// definitions pass.
    #[test]
    fn every_typed_flag_parses_into_the_spec() {
        use crate::cli::{Cli, Command};
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "gpu-train",
            "--layers",
            "4,3,2",
            "--batch",
            "3",
            "--epochs",
            "7",
            "--lr",
            "0.5",
            "--activation",
            "gelu",
            "--loss",
            "l1",
            "--optimizer",
            "adamw",
            "--weight-decay",
            "0.1",
            "--momentum",
            "0.8",
            "--beta1",
            "0.7",
            "--beta2",
            "0.6",
            "--eps",
            "1e-6",
            "--dynamic-depth",
            "2",
            "--init-scheme",
            "xavier",
            "--log-every",
            "5",
            "--rows",
            "9",
            "--val-split",
            "0.25",
            "--checkpoint-every",
            "3",
            "--targets",
            "2",
        ])
        .unwrap();
        let t = &cli.train;
        assert_eq!(t.job.val_split, Some(0.25));
        assert_eq!(
            (t.out.checkpoint_every, t.job.dataset.targets),
            (Some(3), Some(2))
        );
        let s = t.job.spec().unwrap();
        assert_eq!(s.layers, Some(vec![4, 3, 2]));
        assert_eq!(
            (s.batch, s.epochs, s.rows, s.log_every),
            (Some(3), Some(7), Some(9), Some(5))
        );
        assert_eq!(s.lr, Some(0.5));
        assert_eq!(s.activation, Some(Activation::Gelu));
        assert_eq!(s.loss, Some(crate::job::Loss::L1));
        assert_eq!(s.init_scheme, Some(InitScheme::Xavier));
        let o = s.optimizer.unwrap();
        assert_eq!(o.kind, Some(crate::job::OptimizerKind::AdamW));
        assert_eq!(
            (o.weight_decay, o.momentum, o.beta1, o.beta2, o.eps),
            (Some(0.1), Some(0.8), Some(0.7), Some(0.6), Some(1e-6))
        );
        assert_eq!(s.dynamic.map(|d| d.max), Some(2));
        let tune =
            Cli::try_parse_from(["gpu-train", "tune", "--layers", "5,4", "--batch", "2"]).unwrap();
        let Some(Command::Tune(t)) = tune.command else {
            panic!("not tune")
        };
        assert_eq!((t.layers, t.batch), (Some(Widths(vec![5, 4])), Some(2)));
    }

    /// Every flag `error::FIELDS` names for a JSON key is a flag of the command line.
    #[test]
    fn every_field_is_a_flag() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let longs: Vec<String> = (cli.get_arguments())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for (flag, _) in crate::error::FIELDS {
            assert!(
                longs.iter().any(|l| l == flag),
                "{flag} is no flag: {longs:?}"
            );
        }
    }

    #[test]
    fn layers_are_whole_numbers_separated_by_commas() {
        assert!(layers("10,,3").unwrap_err().contains("empty width"));
        assert!(layers("10,x").unwrap_err().contains("`x` in `10,x`"));
        assert_eq!(layers(" 4, 5 ,6").unwrap(), Widths(vec![4, 5, 6]));
    }

    #[test]
    fn counts_reals_and_fractions_say_what_is_wrong() {
        assert_eq!(count(" 12 ").unwrap(), 12);
        assert!(count("-3").unwrap_err().contains("not a whole number"));
        assert!(count("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(real("1e-3").unwrap(), 1e-3);
        assert!(real("fast").unwrap_err().contains("not a number"));
        assert_eq!(fraction("0.25").unwrap(), 0.25);
        for bad in ["0", "1", "2", "x"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
    }
}

//! Parsers of flag values given as strings.

use super::*;

/// Parse a positive integer flag value.
pub fn parse_count(flag: &'static str, s: &str) -> Result<usize> {
    let t = s.trim();
    t.parse().map_err(|_| {
        let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let why = if digits {
            format!("`{s}` is too large a number")
        } else {
            format!("`{s}` is not a whole number")
        };
        Error::arg(flag, why)
    })
}

/// Parse `--layers 1000,100,10`.
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if p.is_empty() {
            return Err(Error::arg(
                "--layers",
                format!(
                    "`{s}` has an empty width; expected comma-separated numbers like 1000,100,10"
                ),
            ));
        }
        out.push(p.parse::<usize>().map_err(|_| {
            Error::arg(
                "--layers",
                format!("`{p}` in `{s}` is not a whole number; expected e.g. 1000,100,10"),
            )
        })?);
    }
    Ok(out)
}

/// Parse `--lr`.
pub fn parse_lr(s: &str) -> Result<f32> {
    parse_f32("--lr", s)
}

/// Parse a number flag.
pub fn parse_f32(flag: &'static str, s: &str) -> Result<f32> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| Error::arg(flag, format!("`{s}` is not a number")))
}

//! Names on the command line and in JSON, for the vocabularies' enums.

use super::*;

/// Names on the command line and in JSON, with a one-line description each, for parsing and for
/// listing the valid choices in error messages.
pub trait Named: Sized + Copy + PartialEq + 'static {
    const FLAG: &'static str;
    const CHOICES: &'static [(&'static str, Self)];

    fn name(&self) -> String {
        Self::CHOICES
            .iter()
            .find(|(_, v)| v == self)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    }

    fn choices() -> String {
        Self::CHOICES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Self::CHOICES
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::arg(
                    Self::FLAG,
                    format!("unknown value `{s}`; valid: {}", Self::choices()),
                )
            })
    }
}

pub(super) fn by_name<T: Named, S: Serializer>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.name())
}

pub(super) fn by_display<T: fmt::Display, S: Serializer>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

//! A record of values that stays bounded however long a run goes: every value while there are at
//! most [`CAP`], then every second one, every fourth ... (the stride doubles each time the record
//! fills, dropping every other value kept), so it always holds between `CAP / 2` and `CAP` values,
//! evenly spaced, with the first. What the summary keeps of the losses, the held-out scores and
//! the accuracies of a run of any length.

/// Most values kept.
pub const CAP: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Thinned<T> {
    kept: Vec<T>,
    /// `kept[i]` is value number `i * stride` pushed.
    stride: usize,
    pushed: usize,
    cap: usize,
    /// The last value pushed, if `kept` does not end with it.
    last: Option<T>,
}

impl<T: Clone> Default for Thinned<T> {
    fn default() -> Self {
        Self::with_cap(CAP)
    }
}

impl<T: Clone> Thinned<T> {
    /// A record of at most `cap` values (rounded up to an even number, at least 2).
    pub fn with_cap(cap: usize) -> Self {
        Thinned {
            kept: Vec::new(),
            stride: 1,
            pushed: 0,
            cap: cap.max(2).next_multiple_of(2),
            last: None,
        }
    }

    pub fn push(&mut self, x: T) {
        if self.pushed.is_multiple_of(self.stride) && self.kept.len() == self.cap {
            let mut i = 0;
            self.kept.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
        if self.pushed.is_multiple_of(self.stride) {
            self.kept.push(x);
            self.last = None;
        } else {
            self.last = Some(x);
        }
        self.pushed += 1;
    }

    /// The values kept: value number `i * stride()` pushed at `[i]`.
    pub fn kept(&self) -> &[T] {
        &self.kept
    }

    /// 1 while every value is kept, then 2, 4, 8 ...
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Values pushed in all.
    pub fn len(&self) -> usize {
        self.pushed
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// The last value pushed.
    pub fn last(&self) -> Option<&T> {
        self.last.as_ref().or(self.kept.last())
    }

    /// The values kept and, where it was not, the last one pushed.
    pub fn with_last(&self) -> Vec<T> {
        let mut v = self.kept.clone();
        v.extend(self.last.clone());
        v
    }
}

impl<T: Clone> FromIterator<T> for Thinned<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut t = Thinned::default();
        for x in iter {
            t.push(x);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::Thinned;

    #[test]
    fn keeps_everything_up_to_the_cap() {
        let mut t = Thinned::with_cap(8);
        (0..8).for_each(|i| t.push(i));
        assert_eq!(
            (t.kept(), t.stride(), t.len()),
            (&[0, 1, 2, 3, 4, 5, 6, 7][..], 1, 8)
        );
        assert_eq!(t.last(), Some(&7));
    }

    /// Past the cap, `kept[i]` is value `i * stride` for every length, the count stays within
    /// `[cap / 2, cap]`, and the last value is never lost.
    #[test]
    fn thins_evenly_past_the_cap() {
        let mut t = Thinned::with_cap(8);
        for n in 0..1000usize {
            t.push(n);
            let s = t.stride();
            assert!(
                t.kept().iter().enumerate().all(|(i, &v)| v == i * s),
                "{n}: {t:?}"
            );
            assert!(
                t.kept().len() <= 8 && (n < 8 || t.kept().len() >= 4),
                "{n}: {t:?}"
            );
            assert_eq!(t.kept().len(), n / s + 1, "{n}");
            assert_eq!(
                (t.last(), t.with_last().last(), t.len()),
                (Some(&n), Some(&n), n + 1)
            );
        }
        assert_eq!(t.stride(), 128);
    }
}

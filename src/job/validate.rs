//! Checking a job once, before anything is drawn: every field, the dynamic depth, the host
//! memory it would take.

use super::*;

impl Job {
    /// Check every field; the error names the flag at fault.
    pub fn validate(&self) -> Result<()> {
        if self.layers.len() < 2 {
            return Err(Error::arg(
                "--layers",
                "needs at least two widths (input and output), e.g. 1000,100,10",
            ));
        }
        if let Some(i) = self.layers.iter().position(|&d| d == 0) {
            return Err(Error::arg(
                "--layers",
                format!("width #{} is 0; every width must be at least 1", i + 1),
            ));
        }
        if self.batch == 0 {
            return Err(Error::arg("--batch", "must be at least 1"));
        }
        if self.rows == Some(0) {
            return Err(Error::arg("--rows", "the dataset must have at least 1 row"));
        }
        if self.dataset_rows() < self.batch {
            return Err(Error::arg(
                "--batch",
                format!(
                    "{} is more than the dataset's {} rows",
                    self.batch,
                    self.dataset_rows()
                ),
            ));
        }
        if self.epochs == 0 {
            return Err(Error::arg("--epochs", "must be at least 1"));
        }
        self.check_host_size()?;
        if self.epochs > MAX_EPOCHS {
            return Err(Error::arg(
                "--epochs",
                format!(
                    "{} is more than the most, 2^{} = {MAX_EPOCHS}",
                    self.epochs,
                    MAX_EPOCHS.trailing_zeros()
                ),
            ));
        }
        if self.epochs.checked_mul(self.steps_per_epoch()).is_none() {
            return Err(Error::arg(
                "--epochs",
                format!(
                    "{} epochs of {} steps each are more steps than can be counted",
                    self.epochs,
                    self.steps_per_epoch()
                ),
            ));
        }
        self.optimizer.validate()?;
        if self.loss.is_classification() && self.layers[self.depth()] < 2 {
            return Err(Error::arg(
                "--loss",
                format!(
                    "cross-entropy needs at least 2 outputs (classes); --layers {:?} has {}",
                    self.layers,
                    self.layers[self.depth()]
                ),
            ));
        }
        if let Some(d) = &self.dynamic {
            self.validate_dynamic(d)?;
        }
        if let DataSource::Fixed { x, y } = &self.data {
            let [xr, xc] = self.x_shape();
            let [yr, yc] = self.y_shape();
            if x.len() != xr * xc || y.len() != yr * yc {
                return Err(Error::arg(
                    "--preset",
                    format!(
                        "its fixed x ({} values) and y ({} values) do not fit --batch {} and \
                         --layers {:?}; keep the preset's sizes",
                        x.len(),
                        y.len(),
                        self.batch,
                        self.layers
                    ),
                ));
            }
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return Err(Error::arg(
                "--lr",
                format!("must be a finite number > 0, got {}", self.lr),
            ));
        }
        // Every tensor's element count must fit in u32 for the GPU kernels' indexing.
        let too_big = |n: usize| n > u32::MAX as usize / 4;
        for l in 0..self.depth() {
            let [i, o] = self.weight_shape(l);
            if i.checked_mul(o).is_none_or(too_big) {
                return Err(Error::arg(
                    "--layers",
                    format!("weight w{} of {i}x{o} is too large", l + 1),
                ));
            }
        }
        for &d in &self.layers {
            if self.batch.checked_mul(d).is_none_or(too_big) {
                return Err(Error::arg(
                    "--batch",
                    format!("a {}x{d} activation is too large", self.batch),
                ));
            }
        }
        let rows = self.dataset_rows();
        for d in [self.layers[0], self.layers[self.depth()]] {
            if rows.checked_mul(d).is_none_or(too_big) {
                return Err(Error::arg(
                    "--rows",
                    format!("a dataset of {rows}x{d} values is too large"),
                ));
            }
        }
        Ok(())
    }
}

impl Job {
    fn validate_dynamic(&self, d: &DynamicDepth) -> Result<()> {
        let flag = "--dynamic-depth";
        let widths: Vec<String> = self.layers.iter().map(|w| w.to_string()).collect();
        let depth = self.depth();
        if depth < 3 || self.layers[depth - 2] != self.layers[depth - 1] {
            return Err(Error::arg(
                flag,
                format!(
                    "needs a hidden -> hidden layer to share: at least two hidden layers, the \
                     last two of the same width (e.g. --layers 1000,100,100,10, as in the \
                     `dynamic` preset); --layers {} has {}",
                    widths.join(","),
                    if depth < 3 {
                        format!(
                            "{} hidden layer{}",
                            depth - 1,
                            if depth == 2 { "" } else { "s" }
                        )
                    } else {
                        format!(
                            "{} -> {} there",
                            self.layers[depth - 2],
                            self.layers[depth - 1]
                        )
                    }
                ),
            ));
        }
        if d.max == 0 || d.max > MAX_DYNAMIC_DEPTH {
            return Err(Error::arg(
                flag,
                format!(
                    "must be in 1..={MAX_DYNAMIC_DEPTH}, got {} (without the flag every layer \
                     runs once)",
                    d.max
                ),
            ));
        }
        if let Some(&u) = d.schedule.iter().find(|&&u| u > d.max) {
            return Err(Error::arg(
                flag,
                format!("the schedule's {u} uses exceed the maximum {}", d.max),
            ));
        }
        Ok(())
    }
}

/// The most epochs a run may have (2^40: about 35 years at one epoch per millisecond). A run's
/// memory does not grow with its length (see [`crate::thinned`]).
pub const MAX_EPOCHS: usize = if usize::BITS >= 64 {
    (1u64 << 40) as usize
} else {
    // A 32-bit target (the browser): 2^30.
    1 << 30
};

/// The most bytes a job's dataset and parameters may take on the host (they are held more than
/// once: the initial state, the device's copy, the optimizer's state): far past any machine's
/// memory natively, so that only an absurd job is refused before it is drawn; 1 GiB in the
/// browser, whose wasm32 memory is at most 4 GiB.
pub const MAX_HOST_BYTES: u64 = if usize::BITS >= 64 { 1 << 40 } else { 1 << 30 };

impl Job {
    /// The bytes x, y, the weights and the biases take on the host (None past u64).
    pub fn host_bytes(&self) -> Option<u64> {
        let rows = self.dataset_rows() as u64;
        let d = &self.layers;
        let (d0, dl) = (*d.first()? as u64, *d.last()? as u64);
        let elements = (d.windows(2))
            .try_fold(0u64, |acc, w| {
                let (a, b) = (w[0] as u64, w[1] as u64);
                acc.checked_add(a.checked_mul(b)?.checked_add(b)?)
            })
            .and_then(|p| p.checked_add(rows.checked_mul(d0.checked_add(dl)?)?));
        elements.and_then(|e| e.checked_mul(4))
    }

    /// Refuse a job whose x, y, weights and biases would take more than [`MAX_HOST_BYTES`]
    /// (or overflow counting them), naming the size, before anything is allocated.
    fn check_host_size(&self) -> Result<()> {
        let d = &self.layers;
        let rows = self.dataset_rows();
        let bytes = self.host_bytes();
        match bytes {
            Some(b) if b <= MAX_HOST_BYTES => Ok(()),
            _ => Err(Error::arg(
                "--layers",
                format!(
                    "{} rows x [{}]: the dataset and the weights would take {} on the host, more \
                     than the most this build allows ({} MiB)",
                    rows,
                    (d.iter().map(|w| w.to_string()).collect::<Vec<_>>()).join(", "),
                    bytes.map_or_else(
                        || "more bytes than can be counted".to_string(),
                        |b| format!("{} MiB", b >> 20)
                    ),
                    MAX_HOST_BYTES >> 20
                ),
            )),
        }
    }
}

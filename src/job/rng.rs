//! The seeded random streams of a run: each draw a pure function of the seed and its index.

use super::*;

/// The streams of a run's ChaCha8 generator (seeded with the job's seed), one per kind of draw,
/// so that each draw is a pure function of the seed and its index.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// x, y and the initial parameters (`init::HostState`): stream 0.
    Init,
    /// The dynamic depth of step `n`: stream 1 + n.
    Depth(usize),
    /// The row order of epoch `n`: stream 2^32 + n.
    Order(usize),
    /// Which rows `--val-split` holds out: stream 2^33.
    Holdout,
}

/// A ChaCha8 generator seeded with `seed`, at the start of `stream`.
pub fn seeded_stream(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(match stream {
        Stream::Init => 0,
        Stream::Depth(n) => 1 + n as u64,
        Stream::Order(n) => (1 << 32) + n as u64,
        Stream::Holdout => 1 << 33,
    });
    rng
}

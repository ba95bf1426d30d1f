//! A seeded generator for fault injection that can be replayed: the seed is printed, and the
//! same seed given back through an environment variable draws the same numbers.

/// A deterministic generator with a known seed.
#[derive(Debug, Clone)]
pub struct Seeded {
    seed: u64,
    rng: fastrand::Rng,
}

impl Seeded {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Seeded {
            seed,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The seed from `var` when it is set (to reproduce a failure), else a fresh one; prints
    /// `seed N (rerun with VAR=N)` to stdout so a failing run can be replayed.
    pub fn from_env(var: &str) -> Self {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        println!("seed {seed} (rerun with {var}={seed})");
        Seeded::new(seed)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.u64(..n)
    }

    /// A number in `range`.
    pub fn range(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.rng.u64(range)
    }

    /// `true` with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let a: Vec<u64> = {
            let mut r = Seeded::new(7);
            (0..20).map(|_| r.below(1000)).collect()
        };
        let mut r = Seeded::new(7);
        let b: Vec<u64> = (0..20).map(|_| r.below(1000)).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]), "not constant: {a:?}");
    }
}

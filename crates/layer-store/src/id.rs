//! sha256 digests and the identities built from them (state, layer, cache key).

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// All zeros: "no parent" in the chain identity.
    pub const ZERO: Digest = Digest([0; 32]);

    /// sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, 64 chars.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex chars.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses 64 lower- or upper-case hex chars.
    pub fn parse(s: &str) -> Option<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub Digest);

        impl $name {
            /// Full 64-char hex form.
            pub fn hex(&self) -> String {
                self.0.hex()
            }
            /// 12-char short form.
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.hex())
            }
        }
    };
}

id_newtype!(
    /// A state: `sha256(parent state id ‖ layer id)` (the OCI ChainID idea).
    StateId
);
id_newtype!(
    /// A layer: sha256 of its uncompressed deterministic changeset encoding.
    LayerId
);
id_newtype!(
    /// A cache key: `sha256(instruction, parent state, environment, runner version)`.
    CacheKey
);

impl StateId {
    /// The chain identity of `layer` applied on `parent` (`None` = empty root).
    pub fn chain(parent: Option<StateId>, layer: LayerId) -> StateId {
        let mut h = Sha256::new();
        h.update(b"sequential-layer-store state v1\0");
        h.update(parent.map(|p| p.0).unwrap_or(Digest::ZERO).0);
        h.update(layer.0.0);
        StateId(Digest(h.finalize().into()))
    }
}

/// Version of the runner folded into every cache key: bump when `run` semantics change.
pub const RUNNER_VERSION: &str = "sequential-layer-store/1 sh -c";

impl CacheKey {
    /// The key of running `instruction` on `parent` with the extra environment `env` (sorted).
    pub fn compute(
        instruction: &str,
        parent: Option<StateId>,
        env: &[(String, String)],
    ) -> CacheKey {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(b"sequential-layer-store cache key v1");
        field(RUNNER_VERSION.as_bytes());
        field(instruction.as_bytes());
        field(&parent.map(|p| p.0).unwrap_or(Digest::ZERO).0);
        let mut env: Vec<_> = env.to_vec();
        env.sort();
        field(&(env.len() as u64).to_le_bytes());
        for (k, v) in &env {
            field(k.as_bytes());
            field(v.as_bytes());
        }
        CacheKey(Digest(h.finalize().into()))
    }
}

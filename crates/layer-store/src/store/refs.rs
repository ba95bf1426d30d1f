//! Refs and state records: `HEAD`, the `states/` records, resolving a ref, manifests.

use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::id::{Digest, StateId};
use crate::model::StateRecord;
use crate::tree::{self, Entry};
use sequential_support::fs::{read_opt, write_atomic};
use std::fs;
use std::path::{Path, PathBuf};

impl Store {
    /// The current state id (`None` for an empty store or after `reset`).
    pub fn head(&self) -> Result<Option<StateId>> {
        let p = self.dir.join("HEAD");
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => {
                let t = String::from_utf8_lossy(&b);
                let t = t.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                Digest::parse(t)
                    .map(|d| Some(StateId(d)))
                    .ok_or_else(|| Error::Corrupt {
                        id: "HEAD".into(),
                        location: p.clone(),
                        reason: format!("not a state id: {t:?}"),
                    })
            }
        }
    }

    pub(super) fn set_head(&self, s: Option<StateId>) -> Result<()> {
        let text = s.map(|s| format!("{}\n", s.hex())).unwrap_or_default();
        Ok(write_atomic(&self.dir.join("HEAD"), text.as_bytes())?)
    }

    pub(super) fn state_path(&self, s: StateId) -> PathBuf {
        self.dir.join("states").join(s.hex())
    }

    pub(crate) fn state(&self, s: StateId) -> Result<StateRecord> {
        let p = self.state_path(s);
        let b = read_opt(&p)?.ok_or_else(|| Error::MissingObject {
            id: s.hex(),
            needed_by: "a ref or a child state".into(),
        })?;
        serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            id: s.hex(),
            location: p.clone(),
            reason: format!("bad state record: {e}"),
        })
    }

    pub(super) fn state_ids(&self) -> Result<Vec<StateId>> {
        let d = self.dir.join("states");
        let mut v = Vec::new();
        for e in fs::read_dir(&d).at(&d)? {
            let e = e.at(&d)?;
            if let Some(id) = Digest::parse(&e.file_name().to_string_lossy()) {
                v.push(StateId(id));
            }
        }
        v.sort();
        Ok(v)
    }

    pub(super) fn parent_of(&self, s: StateId) -> Result<Option<StateId>> {
        let r = self.state(s)?;
        parse_opt_state(&r.parent, &self.state_path(s))
    }

    /// Resolves a ref (`HEAD`, `HEAD~n`, tag, full id, unique prefix of ≥ 7 hex chars);
    /// `Ok(None)` is the empty root (e.g. `HEAD` of an empty store).
    pub fn resolve_opt(&self, r: &str) -> Result<Option<StateId>> {
        if r == "HEAD" || r == "@" {
            return self.head();
        }
        if let Some(n) = r.strip_prefix("HEAD~") {
            let n: usize = n.parse().map_err(|_| Error::Invalid {
                what: "ref",
                input: r.into(),
                expected: "HEAD~<number>".into(),
            })?;
            let mut s = self.head()?;
            for _ in 0..n {
                match s {
                    Some(id) => s = self.parent_of(id)?,
                    None => {
                        return Err(Error::UnknownRef {
                            input: r.into(),
                            candidates: vec![format!("history has fewer than {n} states")],
                        });
                    }
                }
            }
            return Ok(s);
        }
        if let Some(s) = self.read_tag(r)? {
            return Ok(Some(s));
        }
        if r.len() >= 7 && r.len() <= 64 && r.bytes().all(|c| c.is_ascii_hexdigit()) {
            let lower = r.to_ascii_lowercase();
            let matches: Vec<StateId> = self
                .state_ids()?
                .into_iter()
                .filter(|s| s.hex().starts_with(&lower))
                .collect();
            match matches.len() {
                1 => return Ok(Some(matches[0])),
                0 => {}
                _ => {
                    return Err(Error::AmbiguousRef {
                        input: r.into(),
                        candidates: matches.iter().map(|s| s.hex()).collect(),
                    });
                }
            }
        }
        Err(Error::UnknownRef {
            input: r.into(),
            candidates: self.tags()?.into_iter().map(|t| t.name).collect(),
        })
    }

    /// Resolves a ref that must name a state (not the empty root).
    pub fn resolve(&self, r: &str) -> Result<StateId> {
        self.resolve_opt(r)?.ok_or_else(|| Error::UnknownRef {
            input: r.into(),
            candidates: vec!["(the store is empty: HEAD names no state)".into()],
        })
    }

    /// The full tree of a state (`None` = empty).
    pub fn manifest(&self, s: Option<StateId>) -> Result<Vec<Entry>> {
        let bytes = self.manifest_bytes(s)?;
        tree::decode_manifest(&bytes).ok_or_else(|| Error::Corrupt {
            id: s.map(|s| s.hex()).unwrap_or_default(),
            location: self.objects.dir().to_path_buf(),
            reason: "not a manifest".into(),
        })
    }

    /// The encoded manifest of a state, verified against its id.
    pub(super) fn manifest_bytes(&self, s: Option<StateId>) -> Result<Vec<u8>> {
        let Some(s) = s else {
            return Ok(tree::encode_manifest(&[]));
        };
        let r = self.state(s)?;
        let id = parse_digest(&r.manifest, &self.state_path(s))?;
        self.objects.read(&id, &format!("state {}", s.hex()))
    }

    pub(super) fn layer_entries(&self, layer: &Digest, s: StateId) -> Result<Vec<Entry>> {
        let bytes = self.objects.read(layer, &format!("state {}", s.hex()))?;
        tree::decode_changeset(&bytes).ok_or_else(|| Error::Corrupt {
            id: layer.hex(),
            location: self.objects.dir().to_path_buf(),
            reason: "not a changeset".into(),
        })
    }

    pub(crate) fn all_state_ids(&self) -> Result<Vec<StateId>> {
        self.state_ids()
    }
}

pub(crate) fn parse_digest(s: &str, location: &Path) -> Result<Digest> {
    Digest::parse(s).ok_or_else(|| Error::Corrupt {
        id: s.into(),
        location: location.to_path_buf(),
        reason: "not a sha256 id".into(),
    })
}

pub(crate) fn parse_opt_state(s: &Option<String>, location: &Path) -> Result<Option<StateId>> {
    s.as_deref()
        .map(|s| parse_digest(s, location).map(StateId))
        .transpose()
}

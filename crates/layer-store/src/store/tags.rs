//! Tags and checkpoints (`refs/tags/<name>`, checkpoints as `checkpoint/<name>`).

use super::{CheckoutOptions, Store};
use crate::error::{Error, IoContext, Result};
use crate::id::{Digest, StateId};
use crate::model::{CheckoutOutcome, TagInfo};
use sequential_support::fs::{ensure_dir, read_opt, sync_dir, write_atomic};
use std::fs;
use std::path::PathBuf;

impl Store {
    fn tag_path(&self, name: &str) -> PathBuf {
        self.dir.join("refs/tags").join(name)
    }

    pub(super) fn read_tag(&self, name: &str) -> Result<Option<StateId>> {
        if validate_tag(name).is_err() {
            return Ok(None);
        }
        let p = self.tag_path(name);
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => {
                let t = String::from_utf8_lossy(&b);
                Digest::parse(t.trim())
                    .map(|d| Some(StateId(d)))
                    .ok_or_else(|| Error::Corrupt {
                        id: format!("tag {name}"),
                        location: p.clone(),
                        reason: "not a state id".into(),
                    })
            }
        }
    }

    /// Names the state `r` (default `HEAD`).
    pub fn tag(&self, name: &str, r: Option<&str>) -> Result<TagInfo> {
        validate_tag(name)?;
        let _lock = self.lock()?;
        let s = self.resolve(r.unwrap_or("HEAD"))?;
        let p = self.tag_path(name);
        if let Some(parent) = p.parent() {
            ensure_dir(parent)?;
        }
        write_atomic(&p, format!("{}\n", s.hex()).as_bytes())?;
        Ok(TagInfo {
            name: name.into(),
            hash: s.hex(),
            short: s.short(),
        })
    }

    /// All tags (checkpoints included, as `checkpoint/<name>`), sorted by name.
    pub fn tags(&self) -> Result<Vec<TagInfo>> {
        let root = self.dir.join("refs/tags");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&d),
            };
            for e in rd {
                let e = e.at(&d)?;
                let p = e.path();
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let name = p
                        .strip_prefix(&root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned();
                    if let Some(s) = self.read_tag(&name)? {
                        out.push(TagInfo {
                            name,
                            hash: s.hex(),
                            short: s.short(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a tag; an unknown tag is an error.
    pub fn untag(&self, name: &str) -> Result<()> {
        validate_tag(name)?;
        let _lock = self.lock()?;
        let p = self.tag_path(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(sync_dir(p.parent().expect("tags dir"))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::UnknownRef {
                input: name.into(),
                candidates: self.tags()?.into_iter().map(|t| t.name).collect(),
            }),
            Err(e) => Err(e).at(&p),
        }
    }

    /// Tags head as the checkpoint `name` (the tag `checkpoint/<name>`).
    pub fn checkpoint(&self, name: &str) -> Result<TagInfo> {
        let mut t = self.tag(&format!("checkpoint/{name}"), None)?;
        t.name = name.into();
        Ok(t)
    }

    /// The checkpoints, by name.
    pub fn checkpoints(&self) -> Result<Vec<TagInfo>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter_map(|mut t| {
                t.name = t.name.strip_prefix("checkpoint/")?.to_string();
                Some(t)
            })
            .collect())
    }

    /// Checks out the checkpoint `name`.
    pub fn restore(&self, name: &str, opts: CheckoutOptions) -> Result<CheckoutOutcome> {
        let tag = format!("checkpoint/{name}");
        validate_tag(&tag)?;
        let _lock = self.lock()?;
        let s = self.read_tag(&tag)?.ok_or_else(|| Error::UnknownRef {
            input: name.into(),
            candidates: self
                .checkpoints()
                .map(|v| v.into_iter().map(|t| t.name).collect())
                .unwrap_or_default(),
        })?;
        self.checkout_locked(Some(s), opts)
    }
}

/// Tag names: `[A-Za-z0-9._-]` segments separated by `/`, not `HEAD`, not looking like a hash.
fn validate_tag(name: &str) -> Result<()> {
    let bad = |expected: &str| Error::Invalid {
        what: "tag name",
        input: name.into(),
        expected: expected.into(),
    };
    if name.is_empty() || name.len() > 200 {
        return Err(bad("1 to 200 characters"));
    }
    if name == "HEAD" || name == "@" || name.starts_with("HEAD~") {
        return Err(bad("a name other than HEAD"));
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg.starts_with('.') {
            return Err(bad(
                "`/`-separated segments that are not empty and do not start with `.`",
            ));
        }
        if !seg
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(bad("letters, digits, `.`, `_`, `-` and `/`"));
        }
    }
    if name.len() >= 7 && name.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(
            "a name that is not a hash prefix (7 or more hex chars would shadow state ids)",
        ));
    }
    Ok(())
}

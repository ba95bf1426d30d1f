//! Manifests (full trees) and layers (OCI-style changesets): ordering, encoding, diff and apply.

use crate::id::Digest;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Prefix of OCI whiteout names.
pub const WH_PREFIX: &[u8] = b".wh.";
/// Name of the OCI opaque-directory marker.
pub const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Kind of a tree or changeset entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    /// Directory.
    Dir = 0,
    /// Regular file.
    File = 1,
    /// Symbolic link (`target` is the link text).
    Symlink = 2,
    /// Hard link to the regular file at `target` (a path in the same tree).
    Hardlink = 3,
    /// OCI whiteout `dir/.wh.name`: `dir/name` was deleted (changesets only).
    Whiteout = 4,
    /// OCI opaque marker `dir/.wh..wh..opq`: lower contents of `dir` are hidden (changesets only).
    Opaque = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Dir,
            1 => Kind::File,
            2 => Kind::Symlink,
            3 => Kind::Hardlink,
            4 => Kind::Whiteout,
            5 => Kind::Opaque,
            _ => return None,
        })
    }

    /// Lower-case name for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Whiteout => "whiteout",
            Kind::Opaque => "opaque",
        }
    }
}

/// One path of a tree or changeset. Owner, group and timestamps are deliberately not recorded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    /// Path relative to the work dir, `/`-separated, raw bytes.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`); 0o777 for symlinks, 0 for whiteouts.
    pub mode: u32,
    /// Content size in bytes (files and hard links).
    pub size: u64,
    /// sha256 of the content (files and hard links), zero otherwise.
    pub content: Digest,
    /// Symlink text or hard-link target path.
    pub target: Vec<u8>,
}

impl Entry {
    /// Same content, kind, mode and target (what matters for a diff).
    pub fn same(&self, o: &Entry) -> bool {
        self.kind == o.kind
            && self.mode == o.mode
            && self.content == o.content
            && self.target == o.target
    }

    /// The last path component.
    pub fn name(&self) -> &[u8] {
        name_of(&self.path)
    }
}

/// Last component of a path.
pub fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Parent of a path (`""` for top-level names).
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// Joins a parent and a name.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// `true` when `path` is strictly below `dir` (`dir = ""` is the root).
pub fn is_under(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// Depth-first tree order: component-wise byte order, i.e. bytes with `/` sorting lowest.
/// A directory comes right before its descendants, which are contiguous.
pub fn tree_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        if x != y {
            let m = |c: u8| if c == b'/' { 0 } else { c };
            return m(x).cmp(&m(y));
        }
    }
    a.len().cmp(&b.len())
}

/// Changeset order: tree order, except that within a directory the opaque marker comes first,
/// then whiteouts, then the other entries (OCI: whiteouts before siblings).
pub fn changeset_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let rank = |c: &[u8]| {
        if c == WH_OPAQUE {
            0
        } else if c.starts_with(WH_PREFIX) {
            1
        } else {
            2
        }
    };
    let mut ia = a.split(|&c| c == b'/');
    let mut ib = b.split(|&c| c == b'/');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = rank(x).cmp(&rank(y)).then_with(|| x.cmp(y));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A key ordered by [`tree_cmp`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TreeKey(pub Vec<u8>);

impl Ord for TreeKey {
    fn cmp(&self, o: &Self) -> Ordering {
        tree_cmp(&self.0, &o.0)
    }
}
impl PartialOrd for TreeKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

const MANIFEST_MAGIC: &[u8; 8] = b"SLSMAN01";
const CHANGESET_MAGIC: &[u8; 8] = b"SLSCHG01";

fn encode_with(magic: &[u8; 8], entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 80);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        encode_entry(&mut out, e);
    }
    out
}

/// Appends the canonical encoding of one entry.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    out.push(e.kind as u8);
    out.extend_from_slice(&e.mode.to_le_bytes());
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&e.content.0);
    out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.path);
    out.extend_from_slice(&(e.target.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.target);
}

/// A cursor over encoded bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// Reads a little-endian i64.
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// Reads a digest.
    pub fn digest(&mut self) -> Option<Digest> {
        Some(Digest(self.take(32)?.try_into().ok()?))
    }
    /// Reads one entry.
    pub fn entry(&mut self) -> Option<Entry> {
        let kind = Kind::from_u8(*self.take(1)?.first()?)?;
        let mode = self.u32()?;
        let size = self.u64()?;
        let content = self.digest()?;
        let n = self.u32()? as usize;
        let path = self.take(n)?.to_vec();
        let n = self.u32()? as usize;
        let target = self.take(n)?.to_vec();
        Some(Entry {
            path,
            kind,
            mode,
            size,
            content,
            target,
        })
    }
    /// `true` when everything was consumed.
    pub fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

fn decode_with(magic: &[u8; 8], buf: &[u8]) -> Option<Vec<Entry>> {
    let mut r = Reader::new(buf);
    if r.take(8)? != magic {
        return None;
    }
    let n = r.u64()? as usize;
    let mut v = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        v.push(r.entry()?);
    }
    r.done().then_some(v)
}

/// Canonical encoding of a manifest (entries in tree order, no root entry).
pub fn encode_manifest(entries: &[Entry]) -> Vec<u8> {
    encode_with(MANIFEST_MAGIC, entries)
}
/// Decodes a manifest; `None` when malformed.
pub fn decode_manifest(buf: &[u8]) -> Option<Vec<Entry>> {
    decode_with(MANIFEST_MAGIC, buf)
}
/// Canonical encoding of a changeset: its sha256 is the layer id.
pub fn encode_changeset(entries: &[Entry]) -> Vec<u8> {
    encode_with(CHANGESET_MAGIC, entries)
}
/// Decodes a changeset; `None` when malformed.
pub fn decode_changeset(buf: &[u8]) -> Option<Vec<Entry>> {
    decode_with(CHANGESET_MAGIC, buf)
}

/// Paths that differ between two trees in tree order.
#[derive(Debug, Default)]
pub struct Diff<'a> {
    /// In `b` only.
    pub added: Vec<&'a Entry>,
    /// In both, different (`(a, b)`).
    pub modified: Vec<(&'a Entry, &'a Entry)>,
    /// In `a` only.
    pub deleted: Vec<&'a Entry>,
}

impl Diff<'_> {
    /// No difference.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty()
    }
}

impl AsRef<Entry> for Entry {
    fn as_ref(&self) -> &Entry {
        self
    }
}

/// Merge-join of two trees sorted in tree order.
pub fn diff<'a, A: AsRef<Entry>, B: AsRef<Entry>>(a: &'a [A], b: &'a [B]) -> Diff<'a> {
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let o = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => tree_cmp(&x.as_ref().path, &y.as_ref().path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match o {
            Ordering::Less => {
                d.deleted.push(a[i].as_ref());
                i += 1;
            }
            Ordering::Greater => {
                d.added.push(b[j].as_ref());
                j += 1;
            }
            Ordering::Equal => {
                let (x, y) = (a[i].as_ref(), b[j].as_ref());
                if !x.same(y) {
                    d.modified.push((x, y));
                }
                i += 1;
                j += 1;
            }
        }
    }
    d
}

fn has_ancestor_in(path: &[u8], set: &HashSet<&[u8]>) -> bool {
    if set.is_empty() {
        return false;
    }
    let mut p = path;
    while !p.is_empty() {
        p = parent_of(p);
        if set.contains(p) && !p.is_empty() {
            return true;
        }
    }
    false
}

/// The OCI changeset turning `base` into `new` (both in tree order): added and changed entries,
/// a whiteout per deleted path (not under an already deleted or replaced directory), and an opaque
/// marker instead of whiteouts when a surviving directory lost all of its (two or more) children.
/// Deterministic: it depends only on the two trees.
pub fn changeset(base: &[Entry], new: &[Entry]) -> Vec<Entry> {
    let d = diff(base, new);
    // Directories whose whole subtree is gone or replaced by a non-directory.
    let mut gone: HashSet<&[u8]> = HashSet::new();
    for e in &d.deleted {
        if e.kind == Kind::Dir {
            gone.insert(&e.path);
        }
    }
    for (a, b) in &d.modified {
        if a.kind == Kind::Dir && b.kind != Kind::Dir {
            gone.insert(&a.path);
        }
    }
    // Opaque candidates: directories in both trees whose base children are all deleted.
    let mut children: HashMap<&[u8], usize> = HashMap::new();
    for e in base {
        *children.entry(parent_of(&e.path)).or_default() += 1;
    }
    let mut deleted_children: HashMap<&[u8], usize> = HashMap::new();
    for e in &d.deleted {
        *deleted_children.entry(parent_of(&e.path)).or_default() += 1;
    }
    let new_dirs: HashSet<&[u8]> = new
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .map(|e| e.path.as_slice())
        .collect();
    let mut opaque: HashSet<&[u8]> = HashSet::new();
    for (dir, n) in &deleted_children {
        if *n >= 2
            && children.get(dir) == Some(n)
            && !dir.is_empty()
            && new_dirs.contains(dir)
            && !gone.contains(dir)
        {
            opaque.insert(dir);
        }
    }
    let mut out = Vec::new();
    for dir in &opaque {
        if !has_ancestor_in(dir, &gone) {
            out.push(Entry {
                path: join(dir, WH_OPAQUE),
                kind: Kind::Opaque,
                mode: 0,
                size: 0,
                content: Digest::ZERO,
                target: Vec::new(),
            });
        }
    }
    for e in &d.deleted {
        if has_ancestor_in(&e.path, &gone) || opaque.contains(parent_of(&e.path)) {
            continue;
        }
        let mut name = WH_PREFIX.to_vec();
        name.extend_from_slice(e.name());
        out.push(Entry {
            path: join(parent_of(&e.path), &name),
            kind: Kind::Whiteout,
            mode: 0,
            size: 0,
            content: Digest::ZERO,
            target: Vec::new(),
        });
    }
    out.extend(d.added.iter().map(|e| (*e).clone()));
    out.extend(d.modified.iter().map(|(_, b)| (*b).clone()));
    out.sort_by(|a, b| changeset_cmp(&a.path, &b.path));
    out
}

/// Applies a changeset to a tree (OCI semantics). Returns the new tree in tree order, or the
/// offending path when the changeset is inconsistent with the base.
pub fn apply(base: &[Entry], layer: &[Entry]) -> Result<Vec<Entry>, Vec<u8>> {
    let mut t = Applier::new(base);
    t.apply(layer)?;
    Ok(t.into_tree())
}

/// A tree being rebuilt from layers: apply several changesets, then take the tree (each
/// path is materialized once, the newest layer wins).
#[derive(Debug, Default)]
pub struct Applier {
    map: BTreeMap<TreeKey, Entry>,
}

impl Applier {
    /// Starts from `base`.
    pub fn new(base: &[Entry]) -> Applier {
        Applier {
            map: base
                .iter()
                .map(|e| (TreeKey(e.path.clone()), e.clone()))
                .collect(),
        }
    }

    fn remove_below(&mut self, dir: &[u8]) {
        let keys: Vec<TreeKey> = self
            .map
            .range((
                std::ops::Bound::Excluded(TreeKey(dir.to_vec())),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| is_under(&k.0, dir))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.map.remove(&k);
        }
    }

    /// Applies one changeset; on error returns the offending path.
    pub fn apply(&mut self, layer: &[Entry]) -> Result<(), Vec<u8>> {
        for e in layer {
            match e.kind {
                Kind::Opaque => {
                    let dir = parent_of(&e.path).to_vec();
                    self.remove_below(&dir);
                }
                Kind::Whiteout => {
                    let name = &e.name()[WH_PREFIX.len()..];
                    let victim = join(parent_of(&e.path), name);
                    if self.map.remove(&TreeKey(victim.clone())).is_none() {
                        return Err(e.path.clone());
                    }
                    self.remove_below(&victim);
                }
                _ => {
                    let parent = parent_of(&e.path);
                    if !parent.is_empty()
                        && self.map.get(&TreeKey(parent.to_vec())).map(|p| p.kind)
                            != Some(Kind::Dir)
                    {
                        return Err(e.path.clone());
                    }
                    if e.kind != Kind::Dir {
                        self.remove_below(&e.path);
                    }
                    self.map.insert(TreeKey(e.path.clone()), e.clone());
                }
            }
        }
        Ok(())
    }

    /// The tree, in tree order.
    pub fn into_tree(self) -> Vec<Entry> {
        self.map.into_values().collect()
    }
}

/// A borrowed view of one encoded entry (diffs of big manifests without allocating).
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// Path.
    pub path: &'a [u8],
    /// Kind.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Content digest bytes.
    pub content: &'a [u8],
    /// Symlink text or hard-link target.
    pub target: &'a [u8],
}

impl EntryRef<'_> {
    fn same(&self, o: &EntryRef<'_>) -> bool {
        self.kind == o.kind
            && self.mode == o.mode
            && self.content == o.content
            && self.target == o.target
    }
}

/// Borrowed entries of an encoded manifest; `None` when malformed.
pub fn manifest_refs(buf: &[u8]) -> Option<Vec<EntryRef<'_>>> {
    let mut r = Reader::new(buf);
    if r.take(8)? != MANIFEST_MAGIC {
        return None;
    }
    let n = r.u64()? as usize;
    let mut v = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let kind = Kind::from_u8(*r.take(1)?.first()?)?;
        let mode = r.u32()?;
        let _size = r.u64()?;
        let content = r.take(32)?;
        let len = r.u32()? as usize;
        let path = r.take(len)?;
        let len = r.u32()? as usize;
        let target = r.take(len)?;
        v.push(EntryRef {
            path,
            kind,
            mode,
            content,
            target,
        });
    }
    r.done().then_some(v)
}

/// Borrowed paths `(added, modified, deleted)`.
pub type PathLists<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>, Vec<&'a [u8]>);

/// Paths `(added, modified, deleted)` from `a` to `b`, both borrowed trees in tree order.
pub fn diff_refs<'a>(a: &[EntryRef<'a>], b: &[EntryRef<'a>]) -> PathLists<'a> {
    let (mut added, mut modified, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let o = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => tree_cmp(x.path, y.path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match o {
            Ordering::Less => {
                deleted.push(a[i].path);
                i += 1;
            }
            Ordering::Greater => {
                added.push(b[j].path);
                j += 1;
            }
            Ordering::Equal => {
                if !a[i].same(&b[j]) {
                    modified.push(b[j].path);
                }
                i += 1;
                j += 1;
            }
        }
    }
    (added, modified, deleted)
}

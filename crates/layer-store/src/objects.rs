//! Content-addressed object store: objects (file contents, manifests, changesets) live in pack
//! files, each with a checksummed sorted index; reads are verified against the object's sha256.

use crate::error::{Error, IoContext, Result};
use crate::id::Digest;
use sequential_support::fs::{commit, ensure_dir, prepare, sync_dir, temp_path};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

const PACK_MAGIC: &[u8; 8] = b"SLSPACK1";
const IDX_MAGIC: &[u8; 8] = b"SLSPKIX1";
/// Record header in a pack: id, codec, raw length, stored length.
const REC_HEADER: u64 = 32 + 1 + 8 + 8;
const IDX_ENTRY: usize = 32 + 8 + 8 + 8 + 1;
/// Files larger than this are chunked on capture and streamed on checkout (never held in
/// memory whole).
pub const STREAM_THRESHOLD: u64 = 8 << 20;
/// zstd level for objects.
pub const ZSTD_LEVEL: i32 = 3;

/// Stored uncompressed.
pub const CODEC_RAW: u8 = 0;
/// Stored as one zstd frame.
pub const CODEC_ZSTD: u8 = 1;
/// A big file: the stored bytes list its chunks (each an object), see [`crate::chunk`].
pub const CODEC_CHUNKED: u8 = 2;

/// Where an object is.
#[derive(Clone, Copy, Debug)]
pub struct Loc {
    /// Index into the pack list.
    pub pack: u32,
    /// Offset of the stored bytes in the pack file.
    pub offset: u64,
    /// Stored length.
    pub stored: u64,
    /// Uncompressed length.
    pub raw: u64,
    /// Codec.
    pub codec: u8,
}

#[derive(Debug)]
struct Pack {
    name: String,
    file: Option<Arc<File>>,
}

#[derive(Debug, Default)]
struct PackSet {
    /// Whether the pack indexes were read at least once (they are loaded lazily).
    loaded: bool,
    packs: Vec<Pack>,
    map: HashMap<Digest, Loc>,
}

/// The object store of one store directory (`<dir>/objects`).
#[derive(Debug)]
pub struct ObjectStore {
    dir: PathBuf,
    set: RwLock<PackSet>,
}

impl ObjectStore {
    /// Opens; pack indexes are read on first use.
    pub fn open(dir: PathBuf) -> Result<ObjectStore> {
        let s = ObjectStore {
            dir,
            set: RwLock::new(PackSet::default()),
        };
        Ok(s)
    }

    /// The objects directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads pack indexes not seen yet (another process may have written some).
    pub fn refresh(&self) -> Result<()> {
        let mut names = pack_names(&self.dir)?;
        names.sort();
        let mut set = self.set.write().expect("pack set lock");
        set.loaded = true;
        for name in names {
            if set.packs.iter().any(|p| p.name == name) {
                continue;
            }
            let idx_path = self.dir.join(format!("{name}.idx"));
            let entries = match read_idx(&idx_path) {
                Ok(e) => e,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let pack = set.packs.len() as u32;
            set.packs.push(Pack { name, file: None });
            set.map.reserve(entries.len());
            for (id, mut loc) in entries {
                loc.pack = pack;
                set.map.entry(id).or_insert(loc);
            }
        }
        Ok(())
    }

    fn ensure_loaded(&self) {
        if !self.set.read().expect("pack set lock").loaded
            && let Err(e) = self.refresh()
        {
            tracing::warn!(error = %e, "cannot load pack indexes");
        }
    }

    /// Whether the object is present (in the loaded packs).
    pub fn contains(&self, id: &Digest) -> bool {
        self.ensure_loaded();
        self.set.read().expect("pack set lock").map.contains_key(id)
    }

    /// Location of an object, refreshing the pack list once on a miss.
    pub fn locate(&self, id: &Digest) -> Result<Option<(Loc, PathBuf)>> {
        for attempt in 0..2 {
            {
                let set = self.set.read().expect("pack set lock");
                if let Some(loc) = set.map.get(id) {
                    let path = self
                        .dir
                        .join(format!("{}.pack", set.packs[loc.pack as usize].name));
                    return Ok(Some((*loc, path)));
                }
            }
            if attempt == 0 {
                self.refresh()?;
            }
        }
        Ok(None)
    }

    fn file(&self, pack: u32) -> Result<Arc<File>> {
        {
            let set = self.set.read().expect("pack set lock");
            if let Some(f) = &set.packs[pack as usize].file {
                return Ok(f.clone());
            }
        }
        let mut set = self.set.write().expect("pack set lock");
        let p = &mut set.packs[pack as usize];
        let path = self.dir.join(format!("{}.pack", p.name));
        let f = Arc::new(File::open(&path).at(&path)?);
        p.file = Some(f.clone());
        Ok(f)
    }

    /// Reads and verifies an object; `needed_by` names the referrer in errors.
    pub fn read(&self, id: &Digest, needed_by: &str) -> Result<Vec<u8>> {
        let (loc, path) = self.locate(id)?.ok_or_else(|| Error::MissingObject {
            id: id.hex(),
            needed_by: needed_by.to_string(),
        })?;
        if let Some(out) = self.read_small(id, loc, &path)? {
            return Ok(out);
        }
        let mut out = Vec::with_capacity(loc.raw as usize);
        match self.copy_to(id, loc, &path, &mut out) {
            Err(e) if pack_vanished(&e) => {
                // A concurrent gc repacked it: reload the pack list and try once more.
                self.reload()?;
                let (loc, path) = self.locate(id)?.ok_or_else(|| Error::MissingObject {
                    id: id.hex(),
                    needed_by: needed_by.to_string(),
                })?;
                out.clear();
                self.copy_to(id, loc, &path, &mut out)?;
            }
            r => r?,
        }
        Ok(out)
    }

    /// One-frame objects decompressed straight into the result (no second copy); `None` for
    /// the other codecs.
    fn read_small(&self, id: &Digest, loc: Loc, path: &Path) -> Result<Option<Vec<u8>>> {
        if loc.raw > STREAM_THRESHOLD || !matches!(loc.codec, CODEC_ZSTD | CODEC_RAW) {
            return Ok(None);
        }
        let f = match self.file(loc.pack) {
            Ok(f) => f,
            Err(e) if pack_vanished(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut stored = vec![0; loc.stored as usize];
        f.read_exact_at(&mut stored, loc.offset).at(path)?;
        let corrupt = |reason: String| Error::Corrupt {
            id: id.hex(),
            location: path.to_path_buf(),
            reason,
        };
        let raw = if loc.codec == CODEC_ZSTD {
            decompress(&stored, loc.raw as usize)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?
        } else {
            stored
        };
        if raw.len() as u64 != loc.raw {
            return Err(corrupt(format!(
                "length {}, expected {}",
                raw.len(),
                loc.raw
            )));
        }
        let got = Digest::of(&raw);
        if got != *id {
            return Err(corrupt(format!("content hashes to {got}")));
        }
        Ok(Some(raw))
    }

    /// Streams an object into `w`, verifying its hash; the error names the object and pack.
    pub fn write_to(&self, id: &Digest, needed_by: &str, w: &mut dyn Write) -> Result<u64> {
        let (loc, path) = self.locate(id)?.ok_or_else(|| Error::MissingObject {
            id: id.hex(),
            needed_by: needed_by.to_string(),
        })?;
        match self.copy_to(id, loc, &path, w) {
            // A concurrent gc repacked it (nothing was written yet: the pack did not open).
            Err(e) if pack_vanished(&e) => {
                self.reload()?;
                let (loc, path) = self.locate(id)?.ok_or_else(|| Error::MissingObject {
                    id: id.hex(),
                    needed_by: needed_by.to_string(),
                })?;
                self.copy_to(id, loc, &path, w)?;
                Ok(loc.raw)
            }
            r => r.map(|()| loc.raw),
        }
    }

    fn copy_to(&self, id: &Digest, loc: Loc, path: &Path, w: &mut dyn Write) -> Result<()> {
        let corrupt = |reason: String| Error::Corrupt {
            id: id.hex(),
            location: path.to_path_buf(),
            reason,
        };
        let f = self.file(loc.pack)?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut sink = |chunk: &[u8]| -> Result<()> {
            hasher.update(chunk);
            total += chunk.len() as u64;
            w.write_all(chunk).at(path)
        };
        let src = PackReader {
            file: &f,
            pos: loc.offset,
            end: loc.offset + loc.stored,
        };
        match loc.codec {
            CODEC_ZSTD if loc.raw <= STREAM_THRESHOLD => {
                let mut stored = vec![0; loc.stored as usize];
                f.read_exact_at(&mut stored, loc.offset).at(path)?;
                let raw = decompress(&stored, loc.raw as usize)
                    .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
                sink(&raw)?;
            }
            CODEC_RAW => pump(src, &mut sink).map_err(|e| io_or(e, path))?,
            CODEC_CHUNKED => {
                let mut list = vec![0; loc.stored as usize];
                f.read_exact_at(&mut list, loc.offset).at(path)?;
                let chunks = crate::chunk::decode_list(&list)
                    .ok_or_else(|| corrupt("bad chunk list".into()))?;
                for (chunk, len) in chunks {
                    let bytes = self.read(&chunk, &format!("chunk of object {}", id.hex()))?;
                    if bytes.len() as u64 != len {
                        return Err(corrupt(format!(
                            "chunk {} has {} bytes, expected {len}",
                            chunk.hex(),
                            bytes.len()
                        )));
                    }
                    sink(&bytes)?;
                }
            }
            CODEC_ZSTD => {
                let dec = zstd::stream::read::Decoder::new(src).at(path)?;
                pump(dec, &mut sink).map_err(|e| match e {
                    PumpError::Read(e) => corrupt(format!("cannot decompress: {e}")),
                    PumpError::Sink(e) => e,
                })?
            }
            c => return Err(corrupt(format!("unknown codec {c}"))),
        }
        if total != loc.raw {
            return Err(corrupt(format!("length {total}, expected {}", loc.raw)));
        }
        let got = Digest(hasher.finalize().into());
        if got != *id {
            return Err(corrupt(format!("content hashes to {got}")));
        }
        Ok(())
    }

    /// Every object id with its location (for verify and gc).
    pub fn all(&self) -> Vec<(Digest, Loc, String)> {
        self.ensure_loaded();
        let set = self.set.read().expect("pack set lock");
        set.map
            .iter()
            .map(|(id, l)| (*id, *l, set.packs[l.pack as usize].name.clone()))
            .collect()
    }

    /// Names of the loaded packs with their object count.
    pub fn pack_names(&self) -> Vec<String> {
        self.ensure_loaded();
        self.set
            .read()
            .expect("pack set lock")
            .packs
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// Raw stored bytes of an object (for repacking without recompression).
    pub fn read_stored(&self, loc: Loc) -> Result<Vec<u8>> {
        let f = self.file(loc.pack)?;
        let mut buf = vec![0; loc.stored as usize];
        f.read_exact_at(&mut buf, loc.offset).at(&self.dir)?;
        Ok(buf)
    }

    /// Forgets everything and reloads from disk (after gc).
    pub fn reload(&self) -> Result<()> {
        *self.set.write().expect("pack set lock") = PackSet::default();
        self.refresh()
    }
}

fn pack_vanished(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

enum PumpError {
    Read(std::io::Error),
    Sink(Error),
}

fn io_or(e: PumpError, path: &Path) -> Error {
    match e {
        PumpError::Read(e) => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
        PumpError::Sink(e) => e,
    }
}

fn pump(mut r: impl Read, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<(), PumpError> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        sink(&buf[..n]).map_err(PumpError::Sink)?;
    }
}

struct PackReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = ((self.end - self.pos) as usize).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "pack truncated",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

fn pack_names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e).at(dir),
    };
    for e in rd {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".idx")
            && !name.starts_with('.')
        {
            v.push(stem.to_string());
        }
    }
    Ok(v)
}

/// Reads and checks a pack index.
pub fn read_idx(path: &Path) -> Result<Vec<(Digest, Loc)>> {
    let buf = fs::read(path).at(path)?;
    let corrupt = |reason: &str| Error::Corrupt {
        id: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        location: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if buf.len() < 8 + 8 + 32 || &buf[..8] != IDX_MAGIC {
        return Err(corrupt("not a pack index"));
    }
    let (body, sum) = buf.split_at(buf.len() - 32);
    if Digest::of(body).0 != sum {
        return Err(corrupt("pack index checksum mismatch"));
    }
    let n = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")) as usize;
    if body.len() != 16 + n * IDX_ENTRY {
        return Err(corrupt("pack index length mismatch"));
    }
    let mut v = Vec::with_capacity(n);
    for c in body[16..].chunks_exact(IDX_ENTRY) {
        let id = Digest(c[..32].try_into().expect("32 bytes"));
        let u = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
        v.push((
            id,
            Loc {
                pack: 0,
                offset: u(32),
                stored: u(40),
                raw: u(48),
                codec: c[56],
            },
        ));
    }
    Ok(v)
}

thread_local! {
    /// One zstd context per thread: creating one per small object costs more than compressing it.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses `data` (zstd level 3), falling back to raw when it does not shrink.
pub fn compress(data: &[u8]) -> (u8, Vec<u8>) {
    if data.len() >= 64 {
        let c = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            slot.as_mut().and_then(|c| c.compress(data).ok())
        });
        if let Some(c) = c
            && c.len() < data.len()
        {
            return (CODEC_ZSTD, c);
        }
    }
    (CODEC_RAW, data.to_vec())
}

/// Decompresses one zstd frame of known size with the thread's reusable context.
fn decompress(stored: &[u8], raw: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("decompressor").decompress(stored, raw)
    })
}

/// Writes one new pack; shared by worker threads; made durable and visible by [`PackWriter::finish`].
#[derive(Debug)]
pub struct PackWriter {
    dir: PathBuf,
    inner: Mutex<PackInner>,
}

#[derive(Debug)]
struct PackInner {
    tmp: PathBuf,
    file: Option<File>,
    offset: u64,
    entries: Vec<(Digest, Loc)>,
    ids: std::collections::HashSet<Digest>,
}

impl PackWriter {
    /// Starts a pack in `objects`.
    pub fn new(objects: &Path) -> Result<PackWriter> {
        ensure_dir(objects)?;
        Ok(PackWriter {
            dir: objects.to_path_buf(),
            inner: Mutex::new(PackInner {
                tmp: temp_path(&objects.join("pack")),
                file: None,
                offset: 0,
                entries: Vec::new(),
                ids: Default::default(),
            }),
        })
    }

    /// Bytes of stored objects written so far (record headers included).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.lock().expect("pack lock").offset
    }

    /// Whether this pack already holds `id`.
    pub fn has(&self, id: &Digest) -> bool {
        self.inner.lock().expect("pack lock").ids.contains(id)
    }

    /// Appends an object given its id and stored form (no-op if already added).
    pub fn add_stored(&self, id: Digest, codec: u8, raw: u64, stored: &[u8]) -> Result<()> {
        let mut g = self.inner.lock().expect("pack lock");
        if !g.ids.insert(id) {
            return Ok(());
        }
        if g.file.is_none() {
            let tmp = g.tmp.clone();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .at(&tmp)?;
            f.write_all(PACK_MAGIC).at(&tmp)?;
            g.file = Some(f);
            g.offset = PACK_MAGIC.len() as u64;
        }
        let mut header = Vec::with_capacity(REC_HEADER as usize);
        header.extend_from_slice(&id.0);
        header.push(codec);
        header.extend_from_slice(&raw.to_le_bytes());
        header.extend_from_slice(&(stored.len() as u64).to_le_bytes());
        let tmp = g.tmp.clone();
        let f = g.file.as_mut().expect("pack file");
        f.write_all(&header).at(&tmp)?;
        f.write_all(stored).at(&tmp)?;
        let offset = g.offset + REC_HEADER;
        g.offset = offset + stored.len() as u64;
        g.entries.push((
            id,
            Loc {
                pack: 0,
                offset,
                stored: stored.len() as u64,
                raw,
                codec,
            },
        ));
        Ok(())
    }

    /// Appends the chunk list of a big file (its sha256 is `id`, its size `raw`).
    pub fn add_chunked(&self, id: Digest, raw: u64, list: &[u8]) -> Result<()> {
        self.add_stored(id, CODEC_CHUNKED, raw, list)
    }

    /// Compresses and appends `data` (its sha256 is `id`).
    pub fn add(&self, id: Digest, data: &[u8]) -> Result<()> {
        if self.has(&id) {
            return Ok(());
        }
        let (codec, stored) = compress(data);
        self.add_stored(id, codec, data.len() as u64, &stored)
    }

    /// fsyncs and publishes the pack (data, then its index, then the directory).
    /// Returns the names of the packs written.
    pub fn finish(self) -> Result<Vec<String>> {
        let mut g = self.inner.into_inner().expect("pack lock");
        let mut names = Vec::new();
        if let Some(f) = g.file.take() {
            let mut entries = std::mem::take(&mut g.entries);
            let name = format!("pack-{}", uuid::Uuid::now_v7().simple());
            let pack = self.dir.join(format!("{name}.pack"));
            sequential_support::fs::publish(f, &g.tmp, &pack)?;
            write_idx(&self.dir, &name, &mut entries)?;
            names.push(name);
        }
        if !names.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(names)
    }
}

impl Drop for PackInner {
    fn drop(&mut self) {
        // Still open: the pack was abandoned (an error before `finish`).
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `<name>.idx` (sorted, checksummed) durably; the pack must already be in place or be
/// renamed before the index (a pack without index is ignored and collected by gc).
pub fn write_idx(dir: &Path, name: &str, entries: &mut [(Digest, Loc)]) -> Result<()> {
    entries.sort_by_key(|e| e.0);
    let mut buf = Vec::with_capacity(16 + entries.len() * IDX_ENTRY + 32);
    buf.extend_from_slice(IDX_MAGIC);
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (id, l) in entries.iter() {
        buf.extend_from_slice(&id.0);
        buf.extend_from_slice(&l.offset.to_le_bytes());
        buf.extend_from_slice(&l.stored.to_le_bytes());
        buf.extend_from_slice(&l.raw.to_le_bytes());
        buf.push(l.codec);
    }
    let sum = Digest::of(&buf);
    buf.extend_from_slice(&sum.0);
    let path = dir.join(format!("{name}.idx"));
    let tmp = prepare(&path, &buf)?;
    Ok(commit(&tmp, &path)?)
}

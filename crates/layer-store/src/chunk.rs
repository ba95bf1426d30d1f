//! Content-defined chunking of big files (a gear-hash chunker in the FastCDC family), so that a
//! small edit in a large file stores a few new chunks instead of the whole file.

use crate::error::{IoContext, Result};
use crate::id::Digest;
use crate::index::Sink;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

/// No cut before this many bytes.
pub const MIN: usize = 16 << 10;
/// Always cut here.
pub const MAX: usize = 256 << 10;
/// A cut where the gear hash has these bits clear: about one per 64 KiB past `MIN` (chunks
/// average ~80 KiB, so 16 scattered 4 KiB edits store ~1.3 MiB).
const MASK: u64 = (1 << 16) - 1;
/// Read-ahead: the buffer is refilled to this size, compacting at most `MAX` bytes each time.
const WINDOW: usize = 8 << 20;

/// 256 pseudo-random 64-bit values (splitmix64 of 0..256): fixed forever, so chunk boundaries
/// are the same in every store (ids never depend on them anyway).
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut z = (i as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// Length of the first chunk of `data` (`data.len()` when no cut is found and `eof`; `None`
/// when more data is needed to decide).
fn cut(data: &[u8], eof: bool) -> Option<usize> {
    if data.len() <= MIN {
        return eof.then_some(data.len());
    }
    let mut h = 0u64;
    let end = data.len().min(MAX);
    for (i, &b) in data.iter().enumerate().take(end).skip(MIN) {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
        if h & MASK == 0 {
            return Some(i + 1);
        }
    }
    if end == MAX || eof { Some(end) } else { None }
}

/// Encoded chunk list: for each chunk, its id and length.
pub fn encode_list(chunks: &[(Digest, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(chunks.len() * 40);
    for (id, len) in chunks {
        v.extend_from_slice(&id.0);
        v.extend_from_slice(&len.to_le_bytes());
    }
    v
}

/// Decodes a chunk list; `None` when malformed.
pub fn decode_list(b: &[u8]) -> Option<Vec<(Digest, u64)>> {
    if !b.len().is_multiple_of(40) {
        return None;
    }
    Some(
        b.chunks_exact(40)
            .map(|c| {
                (
                    Digest(c[..32].try_into().expect("32 bytes")),
                    u64::from_le_bytes(c[32..].try_into().expect("8 bytes")),
                )
            })
            .collect(),
    )
}

/// Reads `r` to the end, storing each new chunk and, under the file's sha256, the list of its
/// chunks. Returns the file's id and size.
pub fn store_chunked(r: &mut dyn Read, path: &Path, sink: Sink<'_>) -> Result<(Digest, u64)> {
    let mut whole = Sha256::new();
    let mut buf: Vec<u8> = vec![0; WINDOW];
    let (mut start, mut end) = (0usize, 0usize);
    let mut chunks: Vec<(Digest, u64)> = Vec::new();
    let mut total = 0u64;
    let mut eof = false;
    loop {
        if !eof && end - start < MAX {
            // Compact (less than MAX bytes move) and refill the window.
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while !eof && end < WINDOW {
                let n = r.read(&mut buf[end..]).at(path)?;
                if n == 0 {
                    eof = true;
                }
                end += n;
            }
        }
        if start == end {
            break;
        }
        let n = cut(&buf[start..end], eof).expect("a cut is always found with MAX bytes or at EOF");
        let chunk = &buf[start..start + n];
        whole.update(chunk);
        total += n as u64;
        let id = Digest::of(chunk);
        if !sink.objects.contains(&id) {
            sink.pack.add(id, chunk)?;
        }
        chunks.push((id, n as u64));
        start += n;
    }
    let id = Digest(whole.finalize().into());
    if !sink.objects.contains(&id) {
        sink.pack.add_chunked(id, total, &encode_list(&chunks))?;
    }
    Ok((id, total))
}

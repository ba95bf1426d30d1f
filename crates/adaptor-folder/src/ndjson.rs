//! Append-only NDJSON logs (journals, signal inboxes): a line index and torn-tail detection.
//!
//! A multi-record append is all-or-nothing: every line of a batch but the last carries
//! `"more": k`, the number of lines still to come in its batch. The index counts a batch only
//! once its last line is there, so a batch cut short by a crash is a torn tail — dropped
//! whole, never half-read. Lines without `more` (single-record appends, and every line written
//! before batches were marked) stand alone.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use sequential_adaptor::{Error, Result};

use crate::fsutil::io_err;

/// What [`LineIndex::refresh`] found after the last valid line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    /// The file's size when scanned.
    pub size: u64,
    /// `true` when bytes after the last valid line exist: a torn write (a line without its
    /// newline, or an unparsable last line) that must be dropped.
    pub torn: bool,
}

/// The byte offsets of the complete, valid lines of one log file.
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    id: (u64, u64),
    /// Bytes covered by complete, valid lines.
    end: u64,
    /// Start offset of each line.
    offsets: Vec<u64>,
}

impl LineIndex {
    /// How many valid lines the file holds.
    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// The end of the last valid line.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Brings the index up to date with `file`, reading only bytes it has not seen.
    /// `check(i, line)` validates line `i` (without its newline) and returns its `more` count
    /// (0 for a line that ends its batch). An invalid line followed by more lines is
    /// corruption, not a torn write, and is an error naming the file and line.
    pub fn refresh(
        &mut self,
        file: &File,
        path: &Path,
        check: impl Fn(u64, &[u8]) -> std::result::Result<u64, String>,
    ) -> Result<Tail> {
        let meta = file.metadata().map_err(|e| io_err("inspecting", path, e))?;
        let id = (meta.dev(), meta.ino());
        let size = meta.len();
        if id != self.id || size < self.end {
            *self = LineIndex {
                id,
                ..LineIndex::default()
            };
        }
        if size == self.end {
            return Ok(Tail { size, torn: false });
        }
        let mut buf = vec![0u8; (size - self.end) as usize];
        file.read_exact_at(&mut buf, self.end)
            .map_err(|e| io_err("reading", path, e))?;
        let base = self.end;
        let mut pos = 0usize;
        // lines of a batch whose last line has not been seen yet, and the `more` the next
        // line of that batch must carry
        let mut staged: Vec<u64> = Vec::new();
        let mut expect: Option<u64> = None;
        while pos < buf.len() {
            let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
                return Ok(Tail { size, torn: true });
            };
            let line = &buf[pos..pos + nl];
            let next = pos + nl + 1;
            let checked =
                check(self.len() + staged.len() as u64, line).and_then(|more| match expect {
                    Some(e) if e != more => Err(format!(
                        "a line of a batch says {more} more line(s) follow, {e} were announced"
                    )),
                    _ => Ok(more),
                });
            let more = match checked {
                Ok(more) => more,
                Err(_) if next == buf.len() => return Ok(Tail { size, torn: true }),
                Err(why) => {
                    return Err(Error::backend(
                        format!("reading {}", path.display()),
                        format!(
                            "line {} is not a valid record ({why}) and more lines follow it, so \
                             it is corruption rather than a torn write",
                            self.len() + staged.len() as u64 + 1
                        ),
                    ));
                }
            };
            staged.push(base + pos as u64);
            if more == 0 {
                self.offsets.append(&mut staged);
                self.end = base + next as u64;
                expect = None;
            } else {
                expect = Some(more - 1);
            }
            pos = next;
        }
        Ok(Tail {
            size,
            torn: !staged.is_empty(),
        })
    }

    /// Records lines appended at the end: `lens` are their byte lengths including newlines.
    pub fn push_lines(&mut self, lens: impl IntoIterator<Item = u64>) {
        for l in lens {
            self.offsets.push(self.end);
            self.end += l;
        }
    }

    /// The bytes of lines `from..to` (clamped to the index).
    pub fn read_lines(&self, file: &File, path: &Path, from: u64, to: u64) -> Result<Vec<u8>> {
        let to = to.min(self.len());
        if from >= to {
            return Ok(Vec::new());
        }
        let start = self.offsets[from as usize];
        let stop = if to == self.len() {
            self.end
        } else {
            self.offsets[to as usize]
        };
        let mut buf = vec![0u8; (stop - start) as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| io_err("reading", path, e))?;
        Ok(buf)
    }
}

/// Splits bytes of complete lines into lines (without newlines).
pub(crate) fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn check(_: u64, line: &[u8]) -> std::result::Result<u64, String> {
        serde_json::from_slice::<serde_json::Value>(line)
            .map(|v| v["more"].as_u64().unwrap_or(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn torn_tail_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
        let r = File::open(&p).unwrap();
        let mut idx = LineIndex::default();
        let t = idx.refresh(&r, &p, check).unwrap();
        assert!(t.torn);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.end(), 16);
        // an unparsable but newline-terminated last line is torn too
        f.write_all(b"\n").unwrap();
        assert!(idx.refresh(&r, &p, check).unwrap().torn);
        // with a valid line after it, it is corruption
        f.write_all(b"{\"a\":3}\n").unwrap();
        assert!(idx.refresh(&r, &p, check).is_err());
        let bytes = idx.read_lines(&r, &p, 1, 2).unwrap();
        assert_eq!(bytes, b"{\"a\":2}\n");
    }

    #[test]
    fn a_batch_counts_only_when_its_last_line_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"{\"a\":1}\n{\"a\":2,\"more\":2}\n{\"a\":3,\"more\":1}\n")
            .unwrap();
        let r = File::open(&p).unwrap();
        let mut idx = LineIndex::default();
        let t = idx.refresh(&r, &p, check).unwrap();
        assert!(t.torn, "a batch cut short is a torn tail");
        assert_eq!(
            (idx.len(), idx.end()),
            (1, 8),
            "only the line before the batch counts"
        );
        f.write_all(b"{\"a\":4}\n").unwrap();
        assert!(!idx.refresh(&r, &p, check).unwrap().torn);
        assert_eq!(
            idx.len(),
            4,
            "the whole batch counts once its last line is there"
        );
        // a line that contradicts its batch's count, with more after it, is corruption
        f.write_all(b"{\"a\":5,\"more\":1}\n{\"a\":6,\"more\":3}\n{\"a\":7}\n")
            .unwrap();
        assert!(idx.refresh(&r, &p, check).is_err());
    }
}

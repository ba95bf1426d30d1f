//! The compact binary form of the JSON values the store keeps (journal record data, run bodies,
//! signal payloads): a lossless encoding of a [`Value`] that spells the strings every record
//! repeats (`seq`, `kind`, `fetch`, `result`, `content-type`, `application/json`, …) as one byte,
//! small integers as one byte, UUIDs and lowercase hex digests as their bytes, and HTTP dates
//! as their seconds. A 10-step run's journal takes 1.2 KiB instead of 2.8 KiB of JSON text.
//!
//! Stored values are SQLite BLOBs starting with [`FORMAT`]; values written as JSON TEXT by
//! earlier versions stay readable ([`decode_stored`] takes either), so no migration rewrites
//! them.
//!
//! Layout: one tag byte per value, then its payload.
//!
//! | tag | value |
//! |---|---|
//! | `0x00`, `0x01`, `0x02` | `null`, `false`, `true` |
//! | `0x03` varint | an integer ≥ 0 |
//! | `0x04` varint n | the integer −1 − n |
//! | `0x05` 8 bytes | a float (IEEE 754, little endian) |
//! | `0x06` 16 bytes | a string that is a lowercase hyphenated UUID |
//! | `0x07` varint n, n bytes | a string of 2n lowercase hex digits (n ≥ 8) |
//! | `0x08` varint | a string that is an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`): its Unix seconds |
//! | `0x09` varint n, n bytes | a string (UTF-8) |
//! | `0x0a` varint n, n values | an array |
//! | `0x0b` varint n, n × (key, value) | an object; a key is any of the string forms |
//! | `0x20`–`0x3f`, 0–31 bytes | a string of that many bytes |
//! | `0x40`–`0x7f` | the integers 0–63 |
//! | `0x80`–`0xff` | the string [`DICTIONARY`]`[tag − 0x80]` |
//!
//! Varints are unsigned LEB128. The dictionary and the tags of format 1 never change; a change
//! is a new format byte, and readers keep reading format 1.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Number, Value};

/// The first byte of every binary value: the format version.
pub(crate) const FORMAT: u8 = 1;

/// Strings spelled as one byte (tag `0x80 + index`). Append-only within a format: an index
/// never changes meaning.
const DICTIONARY: [&str; 128] = [
    // journal record fields (tasker-engine's journal.rs, fetch-vm's journal entries)
    "seq",
    "kind",
    "request",
    "result",
    "ok",
    "error",
    "name",
    "message",
    "stack",
    "signal",
    "wakeAt",
    "run",
    "output",
    "input",
    "task",
    "version",
    "hash",
    "line",
    "column",
    "level",
    "value",
    "args",
    "ms",
    "timeoutMs",
    // call kinds
    "fetch",
    "sleep",
    "waitForEvent",
    "emit",
    "tool",
    "child",
    "now",
    "random",
    "log",
    "abort",
    // fetch requests and responses
    "url",
    "options",
    "method",
    "headers",
    "body",
    "data",
    "status",
    "statusText",
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OK",
    "Created",
    "Accepted",
    "No Content",
    "Bad Request",
    "Unauthorized",
    "Forbidden",
    "Not Found",
    "Conflict",
    "Too Many Requests",
    "Internal Server Error",
    "Bad Gateway",
    "Service Unavailable",
    "Gateway Timeout",
    "content-type",
    "content-length",
    "date",
    "server",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "chunked",
    "cache-control",
    "etag",
    "vary",
    "location",
    "close",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/plain; charset=utf-8",
    "text/html",
    "text/html; charset=utf-8",
    "timeout=5",
    // runs (the stored body of a run)
    "id",
    "fence",
    "attempt",
    "revision",
    "created_at",
    "updated_at",
    "ended_at",
    "wake_at",
    "waiting_for",
    "lease",
    "owner",
    "token",
    "expires_at",
    "parent",
    "idempotency_key",
    "queued",
    "running",
    "waiting",
    "paused",
    "stopping",
    "succeeded",
    "failed",
    "cancelled",
    // errors
    "Error",
    "TypeError",
    "RangeError",
    "SyntaxError",
    "ReferenceError",
    "FetchError",
    "Timeout",
    "Cancelled",
    "NonDeterminism",
    "MemoryLimit",
    "StackLimit",
    "UnsupportedError",
    "ToolNotFound",
    "AbortError",
    // console levels and the rest
    "warn",
    "info",
    "debug",
    "type",
    "code",
    "items",
    "count",
    "total",
    "",
];

/// Journal record kinds stored as the integer `index + 1` (schema version 2); any other kind
/// is stored as its text. Append-only: a code never changes meaning (migration 2 writes these
/// codes too).
pub(crate) const KINDS: [&str; 10] = [
    "run.started",
    "call.requested",
    "call.completed",
    "log",
    "timer.armed",
    "child.started",
    "run.paused",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
];

/// The integer a record kind is stored as, when it has one.
pub(crate) fn kind_code(kind: &str) -> Option<i64> {
    KINDS.iter().position(|k| *k == kind).map(|i| i as i64 + 1)
}

/// The kind stored as `code`.
pub(crate) fn kind_name(code: i64) -> Option<&'static str> {
    usize::try_from(code - 1)
        .ok()
        .and_then(|i| KINDS.get(i))
        .copied()
}

const NULL: u8 = 0x00;
const FALSE: u8 = 0x01;
const TRUE: u8 = 0x02;
const UINT: u8 = 0x03;
const NEGINT: u8 = 0x04;
const FLOAT: u8 = 0x05;
const UUID: u8 = 0x06;
const HEX: u8 = 0x07;
const HTTP_DATE: u8 = 0x08;
const STRING: u8 = 0x09;
const ARRAY: u8 = 0x0a;
const OBJECT: u8 = 0x0b;
const SHORT_STRING: u8 = 0x20;
const SMALL_INT: u8 = 0x40;
const WORD: u8 = 0x80;

/// Deeper values are refused when decoding: twice what serde_json's parser reads (128), so
/// whatever JSON text could hold, this form holds too.
const MAX_DEPTH: usize = 256;

/// A stored value that does not decode: the store's file was damaged or written by something
/// else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    at: usize,
    why: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "binary value (format {FORMAT}) at byte {}: {}",
            self.at, self.why
        )
    }
}

impl std::error::Error for DecodeError {}

/// `v` in the binary form (starting with [`FORMAT`]).
pub(crate) fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_onto(&mut out, v);
    out
}

/// `v` in the binary form, appended to `out`.
pub(crate) fn encode_onto(out: &mut Vec<u8>, v: &Value) {
    out.push(FORMAT);
    put_value(out, v);
}

/// The value stored by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    match r.byte()? {
        FORMAT => {}
        _ => return Err(r.fail("unknown format byte")),
    }
    let v = r.value(0)?;
    if r.at != bytes.len() {
        return Err(r.fail("bytes after the value"));
    }
    Ok(v)
}

/// Why a stored column does not hold a value.
#[derive(Debug)]
pub(crate) enum StoredError {
    /// JSON text that does not parse.
    Json(serde_json::Error),
    /// A BLOB that does not decode.
    Binary(DecodeError),
    /// Neither TEXT nor BLOB (a NULL or a number).
    Type(&'static str),
}

impl fmt::Display for StoredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredError::Json(e) => write!(f, "JSON text: {e}"),
            StoredError::Binary(e) => e.fmt(f),
            StoredError::Type(t) => write!(f, "a stored {t}, expected JSON text or a binary value"),
        }
    }
}

impl std::error::Error for StoredError {}

/// A stored column: JSON text (written before format 1) or the binary form.
pub(crate) fn decode_stored(v: rusqlite::types::ValueRef<'_>) -> Result<Value, StoredError> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) => serde_json::from_slice(t).map_err(StoredError::Json),
        ValueRef::Blob(b) => decode(b).map_err(StoredError::Binary),
        ValueRef::Null => Err(StoredError::Type("NULL")),
        ValueRef::Integer(_) => Err(StoredError::Type("integer")),
        ValueRef::Real(_) => Err(StoredError::Type("real")),
    }
}

// ------------------------------------------------------------------------------ encoding

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => put_number(out, n),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            out.push(ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(OBJECT);
            put_varint(out, map.len() as u64);
            for (k, item) in map {
                put_str(out, k);
                put_value(out, item);
            }
        }
    }
}

fn put_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        if u < 64 {
            out.push(SMALL_INT + u as u8);
        } else {
            out.push(UINT);
            put_varint(out, u);
        }
    } else if let Some(i) = n.as_i64() {
        // negative: -1 - i is 0 ..= i64::MAX
        out.push(NEGINT);
        put_varint(out, (-1 - i) as u64);
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        out.push(FLOAT);
        out.extend_from_slice(&f.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    if let Some(i) = word_index(s) {
        out.push(WORD + i as u8);
    } else if let Some(bytes) = uuid_bytes(s) {
        out.push(UUID);
        out.extend_from_slice(&bytes);
    } else if is_hex_digest(s) {
        out.push(HEX);
        put_varint(out, (s.len() / 2) as u64);
        out.extend(
            s.as_bytes()
                .chunks_exact(2)
                .map(|p| (hex_digit(p[0]) << 4) | hex_digit(p[1])),
        );
    } else if let Some(secs) = http_date_secs(s) {
        out.push(HTTP_DATE);
        put_varint(out, secs);
    } else if s.len() < 32 {
        out.push(SHORT_STRING + s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    } else {
        out.push(STRING);
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
}

/// FNV-1a: the dictionary's words are short, and SipHash costs more than the lookup saves.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type WordIndex = HashMap<&'static str, usize, std::hash::BuildHasherDefault<Fnv>>;

fn word_index(s: &str) -> Option<usize> {
    static INDEX: LazyLock<WordIndex> = LazyLock::new(|| {
        DICTIONARY
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, i))
            .collect()
    });
    // short strings only: the longest word is 31 bytes
    if s.len() >= 32 {
        return None;
    }
    INDEX.get(s).copied()
}

fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

fn is_hex_digest(s: &str) -> bool {
    s.len() >= 16 && s.len().is_multiple_of(2) && s.bytes().all(is_lower_hex)
}

fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        if !is_lower_hex(b[i]) || !is_lower_hex(b[i + 1]) {
            return None;
        }
        out[n] = (hex_digit(b[i]) << 4) | hex_digit(b[i + 1]);
        n += 1;
        i += 2;
    }
    Some(out)
}

const HEXES: &[u8; 16] = b"0123456789abcdef";

fn uuid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEXES[(byte >> 4) as usize] as char);
        s.push(HEXES[(byte & 15) as usize] as char);
    }
    s
}

// ------------------------------------------------------------------------------ HTTP dates

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The HTTP date (IMF-fixdate) of `secs` after the epoch, for years up to 9999.
fn http_date(secs: u64) -> Option<String> {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return None;
    }
    let mut s = String::with_capacity(29);
    let digits = |s: &mut String, n: u64, width: u32| {
        for p in (0..width).rev() {
            s.push(char::from(b'0' + (n / 10u64.pow(p) % 10) as u8));
        }
    };
    s.push_str(WEEKDAYS[(days % 7) as usize]);
    s.push_str(", ");
    digits(&mut s, d as u64, 2);
    s.push(' ');
    s.push_str(MONTHS[(m - 1) as usize]);
    s.push(' ');
    digits(&mut s, y as u64, 4);
    s.push(' ');
    digits(&mut s, rem / 3600, 2);
    s.push(':');
    digits(&mut s, rem / 60 % 60, 2);
    s.push(':');
    digits(&mut s, rem % 60, 2);
    s.push_str(" GMT");
    Some(s)
}

/// The seconds of `s` when it is exactly the HTTP date those seconds print as.
fn http_date_secs(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || !s.is_ascii() || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let d = num(5..7)?;
    let m = MONTHS.iter().position(|x| *x == &s[8..11])? as i64 + 1;
    let y = num(12..16)?;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if y < 1970 || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).ok()?;
    // the round trip checks the weekday, the separators and the day of the month
    (http_date(secs)? == s).then_some(secs)
}

// ------------------------------------------------------------------------------ decoding

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn fail(&self, why: &'static str) -> DecodeError {
        DecodeError { at: self.at, why }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.fail("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return Err(self.fail("truncated"));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.fail("varint overflows 64 bits"));
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.fail("varint longer than 10 bytes"))
    }

    /// A length or count: no more than the bytes left (each item takes at least one).
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(self.fail("length beyond the end"));
        }
        Ok(n as usize)
    }

    fn text(&mut self, n: usize) -> Result<String, DecodeError> {
        let at = self.at;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError {
            at,
            why: "a string that is not UTF-8",
        })
    }

    /// A string form, or `None` for a tag of another kind (consumed).
    fn string_of(&mut self, tag: u8) -> Result<Option<String>, DecodeError> {
        Ok(Some(match tag {
            WORD..=0xff => DICTIONARY[(tag - WORD) as usize].to_string(),
            SHORT_STRING..SMALL_INT => self.text((tag - SHORT_STRING) as usize)?,
            STRING => {
                let n = self.len()?;
                self.text(n)?
            }
            UUID => {
                let b: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
                uuid_text(&b)
            }
            HEX => {
                let n = self.len()?;
                let mut s = String::with_capacity(2 * n);
                for b in self.take(n)? {
                    s.push(HEXES[(b >> 4) as usize] as char);
                    s.push(HEXES[(b & 15) as usize] as char);
                }
                s
            }
            HTTP_DATE => {
                let secs = self.varint()?;
                http_date(secs).ok_or_else(|| self.fail("an HTTP date after the year 9999"))?
            }
            _ => return Ok(None),
        }))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nested too deeply"));
        }
        let tag = self.byte()?;
        if let Some(s) = self.string_of(tag)? {
            return Ok(Value::String(s));
        }
        Ok(match tag {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            SMALL_INT..WORD => Value::from(tag - SMALL_INT),
            UINT => Value::from(self.varint()?),
            NEGINT => {
                let n = self.varint()?;
                let n = i64::try_from(n).map_err(|_| self.fail("negative integer too large"))?;
                Value::from(-1 - n)
            }
            FLOAT => {
                let b: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
                Number::from_f64(f64::from_le_bytes(b))
                    .map(Value::Number)
                    .ok_or_else(|| self.fail("a float that is not finite"))?
            }
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let n = self.len()?;
                let mut map = Map::new();
                for _ in 0..n {
                    let tag = self.byte()?;
                    let key = self
                        .string_of(tag)?
                        .ok_or_else(|| self.fail("an object key that is not a string"))?;
                    let item = self.value(depth + 1)?;
                    map.insert(key, item);
                }
                Value::Object(map)
            }
            _ => return Err(self.fail("unknown tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value) -> Vec<u8> {
        let bytes = encode(v);
        assert_eq!(&decode(&bytes).unwrap(), v, "{v} via {bytes:02x?}");
        // what JSON text would say, too (the number kinds survive)
        assert_eq!(
            serde_json::to_string(&decode(&bytes).unwrap()).unwrap(),
            serde_json::to_string(v).unwrap()
        );
        bytes
    }

    #[test]
    fn the_dictionary_has_no_duplicates_and_short_words() {
        for (i, w) in DICTIONARY.iter().enumerate() {
            assert!(w.len() < 32, "{w}");
            assert_eq!(DICTIONARY.iter().position(|x| x == w), Some(i), "{w} twice");
        }
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(63),
            json!(64),
            json!(-1),
            json!(-64),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(0.0),
            json!(-0.0),
            json!(1.5),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!(-123.456),
            json!(""),
            json!("a"),
            json!("x".repeat(31)),
            json!("x".repeat(32)),
            json!("é ü 😀 \u{0} \n \" \\"),
            json!("fetch"),
            json!("Fetch"),
            json!("01a2482e-44c8-764d-8936-d15be5882097"),
            json!("01A2482E-44C8-764D-8936-D15BE5882097"),
            json!("01a2482e-44c8-764d-8936-d15be588209"),
            json!("01a2482e044c8-764d-8936-d15be5882097"),
            json!("7c4d3b56b277bddfcf6a61c844600d47b98bd17ece1003c5af48162970efe8cb"),
            json!("7c4d3b56b277bddf"),
            json!("7c4d3b56b277bdd"),
            json!("7c4d3b56b277bddfc"),
            json!("7C4D3B56B277BDDF"),
            json!("Sat, 05 Dec 2026 21:48:41 GMT"),
            json!("Thu, 01 Jan 1970 00:00:00 GMT"),
            json!("Fri, 31 Dec 9999 23:59:59 GMT"),
            json!("Sun, 06 Nov 1994 08:49:37 GMT"),
            json!("Mon, 06 Nov 1994 08:49:37 GMT"), // wrong weekday: kept as text
            json!("Sun, 6 Nov 1994 08:49:37 GMT"),
            json!("Sun, 06 Nov 1994 08:49:37 UTC"),
            json!("Sun, 31 Feb 1994 08:49:37 GMT"),
            json!("Sun, 06 Nov 1994 24:00:00 GMT"),
            json!("Sun, 06 Nov 1994 +8:49:37 GMT"),
            json!("Wed, 31 Dec 1969 23:59:59 GMT"),
            json!([]),
            json!({}),
            json!([1, "two", [3], {"four": 4}, null]),
            json!({"": 1, "fetch": "fetch", "01a2482e-44c8-764d-8936-d15be5882097": {"deep": [[[]]]}}),
        ];
        for v in &values {
            round_trip(v);
        }
        // parsed from text, numbers keep their kind (1.0 stays a float, -0 an integer)
        for text in [
            "1.0",
            "-0",
            "-0.0",
            "1e2",
            "18446744073709551615",
            "-9223372036854775808",
            "0.1",
        ] {
            round_trip(&serde_json::from_str(text).unwrap());
        }
    }

    #[test]
    fn the_records_of_a_fetch_step_shrink() {
        let completed = json!({"kind":"fetch","result":{"ok":{"data":{"i":0,"ok":true},
            "headers":{"content-type":"application/json","date":"Sat, 05 Dec 2026 21:48:41 GMT"},
            "status":200,"statusText":"OK"}},"seq":0});
        let requested = json!({"kind":"fetch","request":{"options":{},"url":"http://127.0.0.1:9911/step?i=0"},"seq":0});
        let started = json!({"hash":"7c4d3b56b277bddfcf6a61c844600d47b98bd17ece1003c5af48162970efe8cb",
            "input":{"steps":10,"url":"http://127.0.0.1:9911"},"task":"steps","version":1});
        let (mut binary, mut text) = (0, 0);
        for (v, at_most) in [(&completed, 40), (&requested, 45), (&started, 80)] {
            let n = round_trip(v).len();
            assert!(n <= at_most, "{n} bytes for {v}");
            binary += n;
            text += v.to_string().len();
        }
        assert!(
            binary * 5 < text * 2,
            "{binary} bytes for {text} bytes of JSON text"
        );
    }

    #[test]
    fn http_dates_match_the_calendar() {
        assert_eq!(
            http_date(784_111_777).unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(http_date(0).unwrap(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(951_782_400).unwrap(),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            http_date_secs("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400)
        );
        assert_eq!(http_date_secs("Thu, 29 Feb 2001 00:00:00 GMT"), None);
        assert_eq!(http_date(253_402_300_800), None, "year 10000");
        // every day of four centuries formats and parses back
        for day in (0..146_097 * 4).step_by(13) {
            let secs = day * 86_400 + 45_296;
            let s = http_date(secs).unwrap();
            assert_eq!(http_date_secs(&s), Some(secs), "{s}");
        }
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let good = encode(&json!({"a": [1, "two", 3.5, "01a2482e-44c8-764d-8936-d15be5882097"]}));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(&[2, 0]).is_err(), "unknown format");
        assert!(decode(&[FORMAT, 0x0c]).is_err(), "unknown tag");
        assert!(
            decode(&[FORMAT, OBJECT, 1, 0x41, 0]).is_err(),
            "integer key"
        );
        assert!(
            decode(&[FORMAT, SHORT_STRING + 2, 0xff, 0xfe]).is_err(),
            "not UTF-8"
        );
        assert!(
            decode(&[
                FORMAT, UINT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ])
            .is_err()
        );
        assert!(
            decode(&[FORMAT, ARRAY, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
            "huge count"
        );
        let mut deep = vec![FORMAT];
        deep.extend(std::iter::repeat_n([ARRAY, 1], 5000).flatten());
        deep.push(NULL);
        assert!(decode(&deep).is_err(), "too deep");
        // every byte flipped: an error or some value, never a panic
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b);
            }
        }
    }
}

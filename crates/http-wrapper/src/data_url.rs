//! `data:` URLs, answered locally without any network.

use crate::Response;
use crate::error::FetchError;

/// Decodes `data:[<mediatype>][;base64],<data>` into a 200 response.
pub fn respond(url: &str) -> Result<Response, FetchError> {
    let invalid = |reason: &str| FetchError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = &url["data:".len()..];
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("a data: URL needs a ',' before its data"))?;
    let (media, is_base64) = match meta.strip_suffix(";base64") {
        Some(m) => (m, true),
        None => (meta, false),
    };
    let media = if media.is_empty() {
        "text/plain;charset=US-ASCII"
    } else {
        media
    };
    let raw = percent_decode(data).ok_or_else(|| invalid("bad %-escape in the data"))?;
    let body = if is_base64 {
        base64_decode(&raw).ok_or_else(|| invalid("the data is not valid base64"))?
    } else {
        raw
    };
    Ok(Response {
        url: url.to_string(),
        status: 200,
        status_text: "OK".into(),
        headers: vec![("content-type".into(), percent_decode_str(media))],
        body,
        attempts: 1,
    })
}

fn percent_decode_str(s: &str) -> String {
    percent_decode(s)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_percent_and_base64_forms() {
        let r = respond("data:application/json,%7B%22a%22%3A1%7D").unwrap();
        assert_eq!(r.body, br#"{"a":1}"#);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let r = respond("data:text/plain;base64,aGVsbG8gd29ybGQ=").unwrap();
        assert_eq!(r.body, b"hello world");
        let r = respond("data:,hi").unwrap();
        assert_eq!(
            r.header("content-type"),
            Some("text/plain;charset=US-ASCII")
        );
        assert!(respond("data:text/plain").is_err());
        assert!(respond("data:;base64,@@@").is_err());
    }
}

//! `data:` URLs, answered locally without any network.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::percent_decode_str;

use crate::Response;
use crate::error::FetchError;

/// Base64 as `data:` URLs write it: padding optional, stray low bits ignored.
const FORGIVING: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, FORGIVING);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, FORGIVING);

/// Decodes `data:[<mediatype>][;base64],<data>` into a 200 response. %-escapes are decoded as
/// the URL standard does (a `%` not followed by two hex digits stays as it is); base64 may use
/// the standard or the URL-safe alphabet and contain whitespace.
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
    let raw: Vec<u8> = percent_decode_str(data).collect();
    let body = if is_base64 {
        let mut text = raw;
        text.retain(|b| !b.is_ascii_whitespace());
        STANDARD
            .decode(&text)
            .or_else(|_| URL_SAFE.decode(&text))
            .map_err(|_| invalid("the data is not valid base64"))?
    } else {
        raw
    };
    Ok(Response {
        url: url.to_string(),
        status: 200,
        status_text: "OK".into(),
        headers: vec![(
            "content-type".into(),
            percent_decode_str(media).decode_utf8_lossy().into_owned(),
        )],
        body,
        attempts: 1,
    })
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
        let r = respond("data:;base64,aGVs%20bG__8A").unwrap();
        assert_eq!(
            r.body, b"hello\xff\xf0",
            "whitespace, no padding, URL-safe alphabet"
        );
        let r = respond("data:,100%25%zz").unwrap();
        assert_eq!(r.body, b"100%%zz", "a bad escape stays as it is");
        assert!(respond("data:text/plain").is_err());
        assert!(respond("data:;base64,@@@").is_err());
    }
}

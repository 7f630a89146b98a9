//! The one form of HTTP `Range` header the chunk endpoint serves:
//! `bytes=FIRST-LAST`, a single range with both ends given (what clients
//! send to read one chunk out of a pack). Open ranges, suffix ranges and
//! multiple ranges are refused rather than half-served, so a client bug
//! shows up as a clear 400 instead of as unexpected bytes.

use axum::http::{HeaderMap, header};
use stacksync_service::ByteRange;

use crate::error::GatewayError;

/// The range the request asks for, `None` without a `Range` header.
pub(crate) fn requested(headers: &HeaderMap) -> Result<Option<ByteRange>, GatewayError> {
    let mut values = headers.get_all(header::RANGE).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad("more than one Range header"));
    }
    let text = value
        .to_str()
        .map_err(|_| bad("the Range header is not ASCII"))?;
    parse(text).map(Some)
}

/// Parses `bytes=FIRST-LAST` (inclusive, FIRST <= LAST) into `FIRST..LAST+1`.
fn parse(text: &str) -> Result<ByteRange, GatewayError> {
    let spec = text
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| bad(format!("{text:?} is not a byte range (bytes=FIRST-LAST)")))?;
    if spec.contains(',') {
        return Err(bad(format!("{text:?}: only a single range is served")));
    }
    let (first, last) = spec
        .split_once('-')
        .ok_or_else(|| bad(format!("{text:?}: expected bytes=FIRST-LAST")))?;
    let number = |s: &str| -> Result<u64, GatewayError> {
        let s = s.trim();
        // `u64::from_str` takes a leading '+'; HTTP does not.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "{text:?}: both ends of the range must be given as decimal byte positions"
            )));
        }
        s.parse()
            .map_err(|_| bad(format!("{text:?}: a byte position is too large")))
    };
    let (first, last) = (number(first)?, number(last)?);
    if first > last {
        return Err(bad(format!("{text:?}: the range ends before it starts")));
    }
    let end = last
        .checked_add(1)
        .ok_or_else(|| bad(format!("{text:?}: a byte position is too large")))?;
    Ok(ByteRange {
        start: first,
        end: Some(end),
    })
}

fn bad(reason: impl Into<String>) -> GatewayError {
    GatewayError::BadRange {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<(u64, u64)>) {
        let got = parse(text)
            .ok()
            .map(|r| (r.start, r.end.unwrap_or(u64::MAX)));
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn only_single_closed_byte_ranges_parse() {
        check("bytes=0-0", Some((0, 1)));
        check("bytes=10-19", Some((10, 20)));
        check(" bytes=5 - 9 ", Some((5, 10)));
        check("bytes=7-7", Some((7, 8)));
        for bad in [
            "",
            "bytes=",
            "bytes=-5",
            "bytes=5-",
            "bytes=9-5",
            "bytes=0-1,4-5",
            "items=0-5",
            "bytes=+1-5",
            "bytes=a-b",
            "bytes=0-18446744073709551615",
            "bytes=0-99999999999999999999",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn two_range_headers_are_refused() {
        let mut headers = HeaderMap::new();
        assert!(requested(&headers).unwrap().is_none());
        headers.append(header::RANGE, "bytes=0-1".parse().unwrap());
        assert!(requested(&headers).unwrap().is_some());
        headers.append(header::RANGE, "bytes=2-3".parse().unwrap());
        assert!(requested(&headers).is_err());
    }
}

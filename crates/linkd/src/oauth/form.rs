//! Strict parsing of `application/x-www-form-urlencoded` OAuth requests.

use std::borrow::Cow;
use std::ops::Range;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;

use super::OAuthError;

/// Most parameters one request may carry. No OAuth request needs more
/// than about ten; the bound keeps the repeat check below cheap.
const MAX_PARAMS: usize = 32;

/// The parameters of an OAuth request body, each present at most once.
/// A short list: a handful of entries compare faster than they hash.
#[derive(Debug, Default)]
pub struct OAuthForm {
    /// The body. Parameters that needed no decoding are slices of it, so a
    /// poll's form costs two allocations, not one per name and value.
    text: String,
    params: Vec<(Part, Part)>,
}

/// One name or value of the form.
#[derive(Debug)]
enum Part {
    /// Bytes of the body, used as they are.
    Raw(Range<usize>),
    /// RFC 8628's grant type as clients send it (`urn%3Aietf%3A...`),
    /// known without decoding: every poll carries it.
    DeviceCodeGrant,
    /// Percent- or plus-decoded.
    Decoded(String),
}

/// RFC 8628 §3.4's grant type, percent-encoded as form encoders write it.
const ENCODED_DEVICE_CODE_GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";

impl OAuthForm {
    /// RFC 6749 §3.1: a parameter sent without a value counts as omitted.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| self.text(n) == name)
            .map(|(_, v)| self.text(v))
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is missing")))
    }

    fn text<'a>(&'a self, part: &'a Part) -> &'a str {
        text_of(&self.text, part)
    }

    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        if !crate::web::headers::mime(headers)
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        // Bytes that are not UTF-8 would make a name or value that is not
        // (the separators are ASCII), which `part` refuses anyway.
        let text = std::str::from_utf8(body)
            .map_err(|_| not_text())?
            .to_owned();
        let mut params: Vec<(Part, Part)> = Vec::with_capacity(4);
        // WHATWG URL's form parsing: `&`-separated pairs, empty ones
        // skipped, a pair without `=` a name with an empty value. The
        // separators are found with memchr's vector search: a byte-wise
        // loop over a poll's 140 bytes cost more than the rest of the form.
        let bytes = text.as_bytes();
        let mut start = 0;
        while start <= bytes.len() {
            let end = memchr::memchr(b'&', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            if end > start {
                let ranges = match memchr::memchr(b'=', &bytes[start..end]) {
                    Some(i) => (start..start + i, start + i + 1..end),
                    None => (start..end, end..end),
                };
                add(&mut params, &text, ranges)?;
            }
            start = end + 1;
        }
        Ok(OAuthForm { text, params })
    }

    /// The parameters in the order sent.
    #[cfg(test)]
    fn pairs(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(n, v)| (self.text(n).to_owned(), self.text(v).to_owned()))
            .collect()
    }
}

/// Adds one name and value (`ranges` of `text`) unless the value is
/// empty.
fn add(
    params: &mut Vec<(Part, Part)>,
    text: &str,
    ranges: (Range<usize>, Range<usize>),
) -> Result<(), OAuthError> {
    let (Some(name), Some(value)) = (part(text, ranges.0), part(text, ranges.1)) else {
        return Err(not_text());
    };
    if text_of(text, &value).is_empty() {
        return Ok(());
    }
    let name_text = text_of(text, &name);
    // RFC 6749 §3.1: parameters must not be included more than once.
    if params.iter().any(|(n, _)| text_of(text, n) == name_text) {
        return Err(OAuthError::invalid_request(format!(
            "the {name_text} parameter is repeated"
        )));
    }
    if params.len() == MAX_PARAMS {
        return Err(OAuthError::invalid_request(
            "the request holds too many parameters",
        ));
    }
    params.push((name, value));
    Ok(())
}

fn text_of<'a>(text: &'a str, part: &'a Part) -> &'a str {
    match part {
        Part::Raw(range) => &text[range.clone()],
        Part::DeviceCodeGrant => super::token::DEVICE_CODE_GRANT,
        Part::Decoded(decoded) => decoded,
    }
}

fn not_text() -> OAuthError {
    OAuthError::invalid_request("the request holds bytes that are not valid UTF-8 text")
}

/// One name or value of a form body (`range` of `text`): `+` is a space,
/// `%XX` a byte. `None` unless that is UTF-8 text without a NUL or a
/// replacement character, which no OAuth parameter legitimately holds.
///
/// A part without `%`, `+`, NUL or 0xEF (the first byte of U+FFFD) is
/// used as it is, not copied. Most parts of a poll are; decoding every
/// part through `form_urlencoded` (a byte-wise percent decoder, then a
/// lossy UTF-8 pass) was 7% of a poll (BENCH.md).
fn part(text: &str, range: Range<usize>) -> Option<Part> {
    let raw = &text.as_bytes()[range.clone()];
    if memchr::memchr3(b'%', b'+', 0, raw).is_none() && memchr::memchr(0xEF, raw).is_none() {
        return Some(Part::Raw(range));
    }
    if raw == ENCODED_DEVICE_CODE_GRANT.as_bytes() {
        return Some(Part::DeviceCodeGrant);
    }
    // Spaces first: a `%2B` decodes to a `+` that stays one.
    let spaced: Cow<'_, [u8]> = if raw.contains(&b'+') {
        raw.iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect()
    } else {
        Cow::Borrowed(raw)
    };
    let mut bytes = Vec::with_capacity(spaced.len());
    bytes.extend(percent_encoding::percent_decode(&spaced));
    let text = String::from_utf8(bytes).ok()?;
    (!text.contains(['\0', '\u{FFFD}'])).then_some(Part::Decoded(text))
}

/// The parsed form together with the request headers (client
/// authentication reads both).
pub struct OAuthRequest {
    pub headers: HeaderMap,
    pub form: OAuthForm,
}

impl<S: Send + Sync> FromRequest<S> for OAuthRequest {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The headers are moved out, not copied; the body limit travels in
        // the extensions.
        let (mut parts, body) = req.into_parts();
        let headers = std::mem::take(&mut parts.headers);
        let req = Request::from_parts(parts, body);
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError::payload_too_large()
            } else {
                OAuthError::invalid_request("the request body could not be read")
            }
        })?;
        let form = OAuthForm::parse(&headers, &body)?;
        Ok(OAuthRequest { headers, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        h
    }

    #[test]
    fn parses_and_drops_empty_values() {
        let f = OAuthForm::parse(&form_headers(), b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.get("c"), Some("x y"));
    }

    #[test]
    fn decodes_as_browsers_encode() {
        let f = OAuthForm::parse(
            &form_headers(),
            b"&&grant_type=urn%3Aietf%3Aparams&n%61me=a+b%2Bc&bare&utf=%C3%A9t%C3%A9&=x",
        )
        .unwrap();
        assert_eq!(f.get("grant_type"), Some("urn:ietf:params"));
        assert_eq!(f.get("name"), Some("a b+c"));
        assert_eq!(f.get("bare"), None);
        assert_eq!(f.get("utf"), Some("\u{e9}t\u{e9}"));
        assert_eq!(f.get(""), Some("x"));
        // A stray percent sign stays as it is, as WHATWG URL parsing does.
        let f = OAuthForm::parse(&form_headers(), b"a=100%&b=%zz").unwrap();
        assert_eq!((f.get("a"), f.get("b")), (Some("100%"), Some("%zz")));
        // Other characters whose UTF-8 starts with 0xEF are text.
        let f = OAuthForm::parse(&form_headers(), "a=\u{FF21}".as_bytes()).unwrap();
        assert_eq!(f.get("a"), Some("\u{FF21}"));
        for bad in [
            &b"a=\xff"[..],
            b"a=%C3",
            b"\xff=1",
            b"a=%EF%BF%BD",
            b"a=\xEF\xBF\xBD",
            b"\xEF\xBF\xBD=1",
            b"a=\0",
            b"a=%00",
        ] {
            assert!(OAuthForm::parse(&form_headers(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_device_code_grant_reads_the_same_however_encoded() {
        for body in [
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=x",
            "grant_type=urn%3aietf%3aparams%3aoauth%3agrant-type%3adevice_code&device_code=x",
            "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x",
        ] {
            let f = OAuthForm::parse(&form_headers(), body.as_bytes()).unwrap();
            assert_eq!(
                f.get("grant_type"),
                Some(super::super::token::DEVICE_CODE_GRANT),
                "{body}"
            );
            assert_eq!(f.get("device_code"), Some("x"));
        }
        let e = OAuthForm::parse(
            &form_headers(),
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&grant_type=urn:ietf:params:oauth:grant-type:device_code",
        )
        .unwrap_err();
        assert!(e.description.contains("repeated"), "{e:?}");
    }

    #[test]
    fn rejects_repeats_bad_bytes_and_other_types() {
        let e = OAuthForm::parse(&form_headers(), b"a=1&a=2").unwrap_err();
        assert_eq!(e.error, "invalid_request");
        assert!(OAuthForm::parse(&form_headers(), b"a=%FF").is_err());
        assert!(OAuthForm::parse(&form_headers(), b"a=%00").is_err());
        assert!(OAuthForm::parse(&HeaderMap::new(), b"a=1").is_err());
    }

    /// What `form_urlencoded` makes of a body under the same rules: the
    /// parser this one replaced on the hot path.
    fn reference(body: &[u8]) -> Result<Vec<(String, String)>, ()> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if name.contains(['\u{FFFD}', '\0']) || value.contains(['\u{FFFD}', '\0']) {
                return Err(());
            }
            if value.is_empty() {
                continue;
            }
            if params.iter().any(|(n, _)| *n == name) || params.len() == MAX_PARAMS {
                return Err(());
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(params)
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_form_urlencoded(
            body in proptest::collection::vec(
                proptest::sample::select(&b"ab=&+%%0fAF2B6\0\xc3\xa9\xff\xef\xbf\xbd"[..]),
                0..40,
            )
        ) {
            let ours = OAuthForm::parse(&form_headers(), &body).map(|f| f.pairs());
            proptest::prop_assert_eq!(ours.map_err(|_| ()), reference(&body));
        }
    }

    #[test]
    fn bounds_the_number_of_parameters() {
        let body: String = (0..MAX_PARAMS).map(|i| format!("p{i}=v&")).collect();
        assert!(OAuthForm::parse(&form_headers(), body.as_bytes()).is_ok());
        let body = format!("{body}one=more");
        let e = OAuthForm::parse(&form_headers(), body.as_bytes()).unwrap_err();
        assert_eq!(e.error, "invalid_request");
    }
}

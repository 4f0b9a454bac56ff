//! The `Content-Type` a body is declared with, and whether a route takes it.
//!
//! Browsers send `text/plain`, `application/x-www-form-urlencoded` and `multipart/form-data`
//! bodies to any site without asking it first (no CORS preflight). Refusing every body that is
//! not declared as JSON is what keeps a web page from writing to a hub it can reach: a page may
//! only send `application/json` cross-site after a preflight, which the hub answers for the
//! configured origins alone (see docs/SECURITY.md, "Browsers").

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;

/// Plain JSON: what every route with a body takes.
pub(crate) const JSON: &str = "application/json";
/// A JSON merge patch (RFC 7396), which the patch routes take besides plain JSON.
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";

/// The media types of routes whose body is a JSON document.
pub(crate) const JSON_ONLY: &[&str] = &[JSON];
/// The media types of routes whose body is a merge patch.
pub(crate) const JSON_OR_MERGE_PATCH: &[&str] = &[JSON, MERGE_PATCH];

/// What a request declares its body to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Declared<'a> {
    /// No `Content-Type`.
    Nothing,
    /// One `Content-Type` whose media type (parameters dropped) is one of the accepted.
    Accepted,
    /// Anything else: another type, a malformed value, or more than one header.
    Refused(&'a str),
}

/// Checks the request's `Content-Type` against `accepted`. Types and subtypes compare without
/// regard to case and parameters (`; charset=utf-8`) are ignored, as RFC 9110 §8.3.1 says.
pub(crate) fn declared<'a>(headers: &'a HeaderMap, accepted: &[&str]) -> Declared<'a> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Declared::Nothing;
    };
    if values.next().is_some() {
        return Declared::Refused("more than one Content-Type");
    }
    let Ok(text) = value.to_str() else {
        return Declared::Refused("a Content-Type that is not ASCII");
    };
    match essence(text) {
        Some(essence) if accepted.iter().any(|a| a.eq_ignore_ascii_case(essence)) => {
            Declared::Accepted
        }
        _ => Declared::Refused(text),
    }
}

/// The `type/subtype` of a media type, without its parameters; `None` if it is not of that
/// form.
fn essence(text: &str) -> Option<&str> {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let (kind, subtype) = essence.split_once('/')?;
    let token = |part: &str| !part.is_empty() && part.bytes().all(is_token_byte);
    (token(kind) && token(subtype)).then_some(essence)
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// What `declared` makes of these `Content-Type` headers: `None` for no header, else
    /// whether the body is accepted.
    fn check(values: &[&str], accepted: &[&str]) -> Option<bool> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                CONTENT_TYPE,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        match declared(&headers, accepted) {
            Declared::Nothing => None,
            Declared::Accepted => Some(true),
            Declared::Refused(_) => Some(false),
        }
    }

    #[test]
    fn json_is_accepted_in_any_case_and_with_parameters() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            " application/json ; foo=bar",
        ] {
            assert_eq!(check(&[value], JSON_ONLY), Some(true), "{value}");
        }
    }

    #[test]
    fn merge_patch_is_accepted_only_where_a_route_takes_it() {
        let value = "application/merge-patch+json";
        assert_eq!(check(&[value], JSON_OR_MERGE_PATCH), Some(true));
        assert_eq!(check(&[value], JSON_ONLY), Some(false));
        assert_eq!(check(&[JSON], JSON_OR_MERGE_PATCH), Some(true));
    }

    #[test]
    fn what_browsers_send_without_a_preflight_is_refused() {
        for value in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(check(&[value], JSON_OR_MERGE_PATCH), Some(false), "{value}");
        }
    }

    #[test]
    fn look_alikes_and_malformed_values_are_refused() {
        for value in [
            "application/jsonx",
            "application/json+x",
            "text/json",
            "application/json, text/plain",
            "application/ json",
            "application/",
            "/json",
            "json",
            "",
        ] {
            assert_eq!(check(&[value], JSON_ONLY), Some(false), "{value:?}");
        }
    }

    #[test]
    fn no_header_and_two_headers_are_told_apart() {
        assert_eq!(check(&[], JSON_ONLY), None);
        assert_eq!(check(&[JSON, JSON], JSON_ONLY), Some(false));
    }
}

//! Size limits that protect the hub from oversized or pathological documents.

use serde::{Deserialize, Serialize};

/// Default largest serialized state section in bytes. 64 KiB holds any realistic device state
/// (AWS caps a whole shadow at 8 KiB) while keeping one twin far below a memory or disk concern.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Default deepest nesting of a state object. AWS allows 6 levels below `desired`/`reported`;
/// 8 leaves room for firmware that wraps its state once more, and bounds recursion in every walk.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// Deepest nesting anyone may configure: serde_json itself refuses input nested past 128, and the
/// model's walks recurse once per level.
pub const MAX_CONFIGURABLE_DEPTH: usize = 100;

/// Default most named shadows one device may have: AWS IoT's own default quota. Each is a twin
/// of its own in memory (about 1.5 KB with its index entries at ~300 bytes of state, up to the
/// document limit for large ones), and without a cap one device could create them until the
/// hub runs out of memory.
pub const DEFAULT_MAX_NAMED_SHADOWS: usize = 10;

/// Default most twins one tenant may have: no limit (0), since a tenant's fleet size is the
/// operator's business; set one where tenants are not trusted.
pub const DEFAULT_MAX_TWINS_PER_TENANT: usize = 0;

/// The limits every write is checked against before it changes anything. The model checks the
/// document limits; the engine, which keeps the counts, checks the two counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest serialized reported or desired state, and largest request body, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of objects and arrays in a state; the state object itself is depth 1.
    pub max_depth: usize,
    /// Most named shadows (twins `{device}/shadows/{name}`) one device may have; 0 for no limit.
    pub max_named_shadows: usize,
    /// Most twins (named shadows included, deleted ones not) one tenant may have; 0 for no
    /// limit.
    pub max_twins_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_named_shadows: DEFAULT_MAX_NAMED_SHADOWS,
            max_twins_per_tenant: DEFAULT_MAX_TWINS_PER_TENANT,
        }
    }
}

/// Levels a request may wrap around a state: an AWS shadow update puts a section two levels
/// down (`{"state": {"desired": {...}}}`); every HTTP body puts it at most that deep.
pub const ENVELOPE_DEPTH: usize = 2;

/// The deepest nesting of objects and arrays in JSON text, counted byte by byte outside
/// strings, without parsing. Text that is not JSON gets some count; the parser that runs next
/// says what is wrong with it.
///
/// It runs before the parser so that a pathological document (60,000 `[`) is refused as too
/// deep, whatever the parser's own recursion limit makes of it, and is never parsed at all.
pub fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses `text` (`what`: "the request body", "the payload") before it is parsed when it
/// nests deeper than any request within `limits` can: `limits.max_depth` plus
/// [`ENVELOPE_DEPTH`]. The exact depth of each state is checked again once parsed.
pub fn check_nesting(
    what: &'static str,
    text: &[u8],
    limits: &Limits,
) -> Result<(), crate::ModelError> {
    let depth = nesting_depth(text);
    if depth > limits.max_depth.saturating_add(ENVELOPE_DEPTH) {
        return Err(crate::ModelError::TooDeep {
            what,
            depth,
            limit: limits.max_depth,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": {}}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a": "[[[{{{", "b": "\"[[["}"#), 1);
        assert_eq!(nesting_depth(br#"["\\", [[]]]"#), 3);
        assert_eq!(nesting_depth("[".repeat(60_000).as_bytes()), 60_000);
        let parsed: serde_json::Value =
            serde_json::from_str(r#"{"s": {"d": {"x": [1, {"y": "}]"}]}}}"#).unwrap();
        assert_eq!(
            nesting_depth(parsed.to_string().as_bytes()),
            crate::patch::depth(&parsed)
        );
    }

    #[test]
    fn only_text_deeper_than_any_valid_request_is_refused_before_parsing() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let deepest_valid = br#"{"state": {"desired": {"a": {"b": {"c": 1}}}}}"#;
        assert_eq!(check_nesting("the payload", deepest_valid, &limits), Ok(()));
        let one_more = br#"{"state": {"desired": {"a": {"b": {"c": {"d": 1}}}}}}"#;
        assert_eq!(
            check_nesting("the payload", one_more, &limits),
            Err(crate::ModelError::TooDeep {
                what: "the payload",
                depth: 6,
                limit: 3
            })
        );
    }
}

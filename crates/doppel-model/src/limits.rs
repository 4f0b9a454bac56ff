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

/// The limits every write is checked against before it changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest serialized reported or desired state, and largest request body, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of objects and arrays in a state; the state object itself is depth 1.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

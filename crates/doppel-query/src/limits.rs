//! Bounds on what the parser accepts. Queries arrive from untrusted HTTP clients, so every
//! dimension that costs time or stack is capped before any work is done.

/// Longest query, path or order text in bytes. Real fleet filters are a few hundred bytes; 4 KiB
/// leaves ample room while keeping parse time and the evaluated tree small, and fits comfortably
/// in a URL query string.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Deepest nesting of parentheses and `NOT`. The parser, the evaluator and `Display` recurse once
/// per level; 32 is far beyond what a person writes and keeps the stack use trivially bounded.
pub const MAX_NESTING: usize = 32;

/// Most values in one `IN (...)` list. Each value is compared on every candidate twin and becomes
/// an index lookup in planning; larger sets belong in tags or groups, not in a query string.
pub const MAX_IN_VALUES: usize = 256;

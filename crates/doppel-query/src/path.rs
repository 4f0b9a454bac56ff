//! Paths name the field of a twin a condition tests, and orders sort by one.

use std::fmt;

/// The values `connection.status` takes. The parser rejects comparing it for equality with
/// anything else, since such a condition could never match and is almost always a typo
/// (`'connected'`).
pub const CONNECTION_STATUSES: [&str; 3] = ["CONNECTED", "DISCONNECTED", "UNKNOWN"];

/// A field of a twin, by its typed root.
///
/// Segments are stored unquoted: `` reported.`odd key` `` is `Reported(vec!["odd key"])`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// A field of the reported state; never empty.
    Reported(Vec<String>),
    /// A field of the desired state; never empty.
    Desired(Vec<String>),
    /// One tag, by name.
    Tag(String),
    /// `connection.status`: one of [`CONNECTION_STATUSES`], as a JSON string.
    ConnectionStatus,
    /// `connection.stale`: whether the hub marked the device UNKNOWN for its silence, as a JSON
    /// boolean (always present, `false` for a device that was never stale).
    ConnectionStale,
    /// `device_type`.
    DeviceType,
    /// `firmware_version`.
    FirmwareVersion,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (root, segments): (&str, &[String]) = match self {
            Path::Reported(segments) => ("reported", segments),
            Path::Desired(segments) => ("desired", segments),
            Path::Tag(name) => ("tags", std::slice::from_ref(name)),
            Path::ConnectionStatus => return f.write_str("connection.status"),
            Path::ConnectionStale => return f.write_str("connection.stale"),
            Path::DeviceType => return f.write_str("device_type"),
            Path::FirmwareVersion => return f.write_str("firmware_version"),
        };
        f.write_str(root)?;
        for segment in segments {
            f.write_str(".")?;
            write_segment(f, segment)?;
        }
        Ok(())
    }
}

/// Whether `segment` can be written without backticks: `[A-Za-z_][A-Za-z0-9_-]*`.
pub(crate) fn is_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars.next().is_some_and(is_identifier_start) && chars.all(is_identifier_char)
}

pub(crate) fn is_identifier_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn write_segment(f: &mut fmt::Formatter<'_>, segment: &str) -> fmt::Result {
    if is_identifier(segment) {
        f.write_str(segment)
    } else {
        write_quoted(f, segment, '`', "")
    }
}

/// Writes `text` between `quote`s, doubling any `quote` inside it (the one escape the language
/// has), with `suffix` just before the closing quote.
pub(crate) fn write_quoted(
    f: &mut fmt::Formatter<'_>,
    text: &str,
    quote: char,
    suffix: &str,
) -> fmt::Result {
    use fmt::Write as _;
    f.write_char(quote)?;
    for part in text.split_inclusive(quote) {
        f.write_str(part)?;
        if part.ends_with(quote) {
            f.write_char(quote)?;
        }
    }
    f.write_str(suffix)?;
    f.write_char(quote)
}

/// Which way an [`Order`] sorts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    #[default]
    Ascending,
    Descending,
}

/// A sort key: `path`, `path ASC` or `path DESC` (ascending when unspecified).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Order {
    pub path: Path,
    pub direction: Direction,
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction {
            Direction::Ascending => write!(f, "{} ASC", self.path),
            Direction::Descending => write!(f, "{} DESC", self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_bare_identifiers_and_quotes_the_rest() {
        let path = Path::Reported(vec![
            "a-b_1".into(),
            "odd key".into(),
            "x`y".into(),
            String::new(),
            "1st".into(),
        ]);
        assert_eq!(path.to_string(), "reported.a-b_1.`odd key`.`x``y`.``.`1st`");
        assert_eq!(Path::Tag("site".into()).to_string(), "tags.site");
        assert_eq!(Path::ConnectionStatus.to_string(), "connection.status");
        assert_eq!(Path::ConnectionStale.to_string(), "connection.stale");
    }
}

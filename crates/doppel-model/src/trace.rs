//! W3C trace context (`traceparent`): which distributed trace a change belongs to, so a request
//! that crosses Doppel (HTTP or MQTT in, events and messages out) stays one trace.
//!
//! Only the `traceparent` value is understood; `tracestate` is not carried. The text form is
//! `{version}-{trace id}-{parent id}-{flags}` in lower-case hex: 2, 32, 16 and 2 digits.

use std::fmt;
use std::str::FromStr;

/// Length of a version-00 `traceparent`.
const LEN: usize = 55;
/// Offsets of the three dashes in that form.
const DASHES: [usize; 3] = [2, 35, 52];

/// The name a trace context travels under: the W3C HTTP header, the MQTT 5 user property and
/// the field of change-stream events alike.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`. Always printed as version 00, the only version defined so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: [u8; 8],
    flags: u8,
}

/// The 16 bytes that name a whole distributed trace; printed as 32 lower-case hex digits, the
/// form logs and tracing back ends search by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// Why a `traceparent` value was refused. W3C says a receiver then starts a new trace, so
/// callers drop the value rather than fail the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent: {0}")]
pub struct InvalidTraceParent(&'static str);

impl TraceParent {
    /// A trace context from its parts; `None` when either id is all zeros, which W3C reserves
    /// for "no id".
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<TraceParent> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        })
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of the caller's span: the parent of the spans this change makes.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags; bit 0 is "sampled".
    pub fn flags(&self) -> u8 {
        self.flags
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(text: &str) -> Result<TraceParent, InvalidTraceParent> {
        let bytes = text.as_bytes();
        if bytes.len() < LEN {
            return Err(InvalidTraceParent("shorter than 55 characters"));
        }
        if DASHES.iter().any(|&at| bytes[at] != b'-') {
            return Err(InvalidTraceParent(
                "expected version-traceid-parentid-flags separated by dashes",
            ));
        }
        let mut version = [0u8; 1];
        hex(&bytes[0..2], &mut version)?;
        match version[0] {
            0xff => return Err(InvalidTraceParent("version ff is forbidden")),
            // Version 00 has exactly four fields.
            0 if bytes.len() != LEN => {
                return Err(InvalidTraceParent("version 00 is exactly 55 characters"));
            }
            // A later version may append fields; W3C says to read the first four as version 00.
            _ if bytes.len() > LEN && bytes[LEN] != b'-' => {
                return Err(InvalidTraceParent("fields must be separated by dashes"));
            }
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        hex(&bytes[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex(&bytes[36..52], &mut parent_id)?;
        let mut flags = [0u8; 1];
        hex(&bytes[53..55], &mut flags)?;
        TraceParent::new(trace_id, parent_id, flags[0]).ok_or(InvalidTraceParent(
            "the trace id and parent id must not be all zeros",
        ))
    }
}

/// Decodes lower-case hex into `out`, which is exactly half as long as `digits`.
fn hex(digits: &[u8], out: &mut [u8]) -> Result<(), InvalidTraceParent> {
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(InvalidTraceParent("ids and flags are lower-case hex")),
    };
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(())
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-", self.trace_id)?;
        write_hex(f, &self.parent_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

#[cfg(test)]
mod tests;

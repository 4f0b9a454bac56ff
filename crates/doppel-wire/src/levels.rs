//! The topic levels every topic family shares: where each family lives, and the level that
//! says how a request was answered. Below both [`crate::topic`] and [`crate::shadow`], which
//! build on them.

/// Where each thing's AWS topics live.
pub(crate) const AWS_THINGS: &str = "$aws/things";
/// Where each thing's Doppel topics (commands, sync) live.
pub(crate) const DOPPEL_THINGS: &str = "$doppel/things";
/// Where AWS lifecycle (presence) events live; only the hub publishes there.
pub(crate) const AWS_EVENTS: &str = "$aws/events";
/// Where the hub's own events (commands) live; only the hub publishes there.
pub(crate) const DOPPEL_EVENTS: &str = "$doppel/events";

/// How the hub answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accepted,
    Rejected,
}

impl Verdict {
    /// The topic level of the answer: `accepted` or `rejected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    pub(crate) fn from_level(level: &str) -> Option<Self> {
        match level {
            "accepted" => Some(Self::Accepted),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

//! The AWS IoT Device Shadow protocol's topics: the requests a shadow answers, the answers the
//! hub publishes, and the twin each shadow is.
//!
//! A classic shadow lives under `$aws/things/{thing}/shadow`, a named one under
//! `$aws/things/{thing}/shadow/name/{shadow}`. Requests go to `{prefix}/get`, `{prefix}/update`
//! and `{prefix}/delete`; answers come on `{prefix}/{op}/accepted` or `{prefix}/{op}/rejected`,
//! and every accepted update may also publish `{prefix}/update/delta` and
//! `{prefix}/update/documents`.

use crate::levels::{AWS_THINGS, Verdict};
use doppel_model::{DeviceId, ModelError};

/// The three requests a shadow answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShadowOp {
    /// Read the whole shadow document.
    Get,
    /// Merge a request state document into the shadow.
    Update,
    /// Delete the shadow (its version keeps counting if it is created again).
    Delete,
}

impl ShadowOp {
    pub const ALL: [ShadowOp; 3] = [Self::Get, Self::Update, Self::Delete];

    /// The topic level that names the operation: `get`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn from_level(level: &str) -> Option<Self> {
        match level {
            "get" => Some(Self::Get),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// What the hub publishes about a shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShadowAnswer {
    /// The answer to a request: `{prefix}/{op}/accepted` or `{prefix}/{op}/rejected`.
    Reply(ShadowOp, Verdict),
    /// The shadow's pending changes: `{prefix}/update/delta`.
    Delta,
    /// The before-and-after document of an accepted update: `{prefix}/update/documents`.
    Documents,
}

/// A shadow request topic, borrowed from the topic it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowRequest<'a> {
    /// The AWS thing name: Doppel's device id.
    pub thing: &'a str,
    /// The named shadow, or `None` for the classic (unnamed) shadow.
    pub shadow: Option<&'a str>,
    /// What the request asks for.
    pub op: ShadowOp,
}

impl ShadowRequest<'_> {
    /// The topic answering this request with `verdict`, such as
    /// `$aws/things/pump-7/shadow/update/accepted`.
    pub fn reply(&self, verdict: Verdict) -> String {
        answer(
            self.thing,
            self.shadow,
            ShadowAnswer::Reply(self.op, verdict),
        )
    }

    /// The shadow's own name, which refusals quote: the named shadow's, or the thing's.
    pub fn name(&self) -> &str {
        self.shadow.unwrap_or(self.thing)
    }

    /// The id of the twin this request reads or writes; see [`twin_device`].
    pub fn device(&self) -> Result<DeviceId, ModelError> {
        twin_device(self.thing, self.shadow)
    }
}

/// The topic of a request to a shadow, such as `$aws/things/pump-7/shadow/update`.
pub fn request(thing: &str, shadow: Option<&str>, op: ShadowOp) -> String {
    format!("{}/{}", prefix(thing, shadow), op.as_str())
}

/// The topic on which the hub publishes `answer` about a shadow.
pub fn answer(thing: &str, shadow: Option<&str>, answer: ShadowAnswer) -> String {
    let prefix = prefix(thing, shadow);
    match answer {
        ShadowAnswer::Reply(op, verdict) => {
            format!("{prefix}/{}/{}", op.as_str(), verdict.as_str())
        }
        ShadowAnswer::Delta => format!("{prefix}/update/delta"),
        ShadowAnswer::Documents => format!("{prefix}/update/documents"),
    }
}

/// The filter of everything about one shadow, requests and answers: `{prefix}/#`.
pub fn filter(thing: &str, shadow: Option<&str>) -> String {
    format!("{}/#", prefix(thing, shadow))
}

/// The topic prefix of a shadow: `$aws/things/{thing}/shadow` or
/// `$aws/things/{thing}/shadow/name/{shadow}`.
fn prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        Some(name) => format!("{AWS_THINGS}/{thing}/shadow/name/{name}"),
        None => format!("{AWS_THINGS}/{thing}/shadow"),
    }
}

/// What a topic below `$aws/things/{thing}/shadow` is, given the levels after `$aws/things/`
/// joined as `rest`: a request, an answer, or `None` for anything else.
pub(crate) enum Parsed<'a> {
    Request(ShadowRequest<'a>),
    Answer {
        thing: &'a str,
        shadow: Option<&'a str>,
        answer: ShadowAnswer,
    },
}

/// Recognises exactly `{prefix}/{op}` (a request) and the answer topics. Empty levels and
/// wildcard characters, which a thing or shadow name cannot contain, make it `None`; the names
/// are not validated otherwise ([`twin_device`] does that when they are turned into a twin id).
pub(crate) fn parse(rest: &str) -> Option<Parsed<'_>> {
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(op) = ShadowOp::from_level(last) {
        let (thing, shadow) = parse_prefix(head)?;
        return Some(Parsed::Request(ShadowRequest { thing, shadow, op }));
    }
    let (head, answer) = match last {
        "delta" | "documents" => {
            let head = head.strip_suffix("/update")?;
            let answer = if last == "delta" {
                ShadowAnswer::Delta
            } else {
                ShadowAnswer::Documents
            };
            (head, answer)
        }
        _ => {
            let verdict = Verdict::from_level(last)?;
            let (head, op) = head.rsplit_once('/')?;
            (
                head,
                ShadowAnswer::Reply(ShadowOp::from_level(op)?, verdict),
            )
        }
    };
    let (thing, shadow) = parse_prefix(head)?;
    Some(Parsed::Answer {
        thing,
        shadow,
        answer,
    })
}

/// Splits a shadow topic prefix after `$aws/things/`, `{thing}/shadow` or
/// `{thing}/shadow/name/{shadow}`, into the thing and shadow names.
fn parse_prefix(prefix: &str) -> Option<(&str, Option<&str>)> {
    // A prefix has at most four levels after `$aws/things/`; a fixed buffer keeps this
    // per-publish check free of allocation.
    let mut levels = [""; 4];
    let mut count = 0;
    for level in prefix.split('/') {
        *levels.get_mut(count)? = level;
        count += 1;
    }
    let (thing, shadow) = match &levels[..count] {
        [thing, "shadow"] => (*thing, None),
        [thing, "shadow", "name", shadow] => (*thing, Some(*shadow)),
        _ => return None,
    };
    (is_name_level(thing) && shadow.is_none_or(is_name_level)).then_some((thing, shadow))
}

/// A topic level that can hold a thing or shadow name: not empty, no wildcard characters.
fn is_name_level(level: &str) -> bool {
    !level.is_empty() && !level.contains(['+', '#'])
}

/// The twin behind a shadow: the device `thing` itself for the classic shadow, or its named
/// shadow twin `{thing}/shadows/{shadow}`. Fails when either name is outside the id alphabet.
pub fn twin_device(thing: &str, shadow: Option<&str>) -> Result<DeviceId, ModelError> {
    let device = DeviceId::new(thing)?;
    match shadow {
        Some(name) => device.named_shadow(name),
        None => Ok(device),
    }
}

/// The inverse of [`twin_device`]: the thing and shadow name whose topics carry this twin.
pub fn shadow_of(device: &DeviceId) -> (&str, Option<&str>) {
    (device.thing(), device.shadow_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Topic;

    #[test]
    fn topics_map_to_twins_and_back() {
        let classic = twin_device("pump-7", None).expect("a valid thing");
        assert_eq!(classic.as_str(), "pump-7");
        assert_eq!(shadow_of(&classic), ("pump-7", None));

        let Topic::ShadowRequest(named) = Topic::parse("$aws/things/pump-7/shadow/name/config/get")
        else {
            panic!("a named shadow request");
        };
        let named = named.device().expect("a valid named shadow");
        assert_eq!(named.as_str(), "pump-7/shadows/config");
        assert_eq!(shadow_of(&named), ("pump-7", Some("config")));

        // Parsing accepts any level; the id alphabet is enforced when the twin is named.
        let Topic::ShadowRequest(odd) = Topic::parse("$aws/things/pump 7/shadow/get") else {
            panic!("a shadow request with an odd thing name");
        };
        assert!(odd.device().is_err());
        assert!(twin_device("pump-7", Some("a.b")).is_err());
        assert!(twin_device("pump-7", Some(&"x".repeat(65))).is_err());
    }
}

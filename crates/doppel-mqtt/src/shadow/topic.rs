//! AWS IoT Device Shadow topics: recognising the request topics devices publish to, naming the
//! topics the hub answers on, and MQTT topic-filter matching.
//!
//! A classic shadow lives under `$aws/things/{thing}/shadow`, a named one under
//! `$aws/things/{thing}/shadow/name/{shadow}`. Requests go to `{prefix}/get`, `{prefix}/update`
//! and `{prefix}/delete`; answers come on `{prefix}/{op}/accepted` or `{prefix}/{op}/rejected`,
//! and every accepted update may also publish `{prefix}/update/delta` and
//! `{prefix}/update/documents`.

use doppel_model::{DeviceId, ModelError};

/// What every shadow topic starts with. The leading `$` keeps shadow traffic out of `#` and `+`
/// subscriptions made at the first level (MQTT 3.1.1 section 4.7.2).
const THINGS_PREFIX: &str = "$aws/things/";

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

/// A shadow request topic, borrowed from the topic it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowTopic<'a> {
    /// The AWS thing name: Doppel's device id.
    pub thing: &'a str,
    /// The named shadow, or `None` for the classic (unnamed) shadow.
    pub shadow: Option<&'a str>,
    /// What the request asks for.
    pub op: ShadowOp,
}

impl ShadowTopic<'_> {
    /// The topic answering this request with `outcome` (`"accepted"` or `"rejected"`), such as
    /// `$aws/things/pump-7/shadow/update/accepted`.
    pub fn response(&self, outcome: &str) -> String {
        format!(
            "{}/{}/{outcome}",
            shadow_prefix(self.thing, self.shadow),
            self.op.as_str()
        )
    }

    /// The id of the twin this request reads or writes; see [`twin_device`].
    pub fn device(&self) -> Result<DeviceId, ModelError> {
        twin_device(self.thing, self.shadow)
    }
}

/// Recognises a shadow request topic: exactly `$aws/things/{thing}/shadow/{op}` or
/// `$aws/things/{thing}/shadow/name/{shadow}/{op}` with `op` one of `get`, `update`, `delete`.
///
/// Returns `None` for everything else, including the response topics (`.../get/accepted`,
/// `.../update/delta`), which the hub publishes itself and must never treat as requests, and for
/// empty levels or wildcard characters, which a thing or shadow name cannot contain. The names
/// are not validated here; [`twin_device`] does that when they are turned into a twin id.
pub fn parse_request(topic: &str) -> Option<ShadowTopic<'_>> {
    let (prefix, op) = topic.rsplit_once('/')?;
    let op = ShadowOp::from_level(op)?;
    let (thing, shadow) = parse_prefix(prefix)?;
    Some(ShadowTopic { thing, shadow, op })
}

/// Recognises exactly a shadow's `/update/delta` topic (no wildcards) and returns its thing and
/// shadow name, so that a subscription to it can be answered with the pending delta.
pub fn parse_delta(topic: &str) -> Option<(&str, Option<&str>)> {
    parse_prefix(topic.strip_suffix("/update/delta")?)
}

/// Splits a shadow topic prefix, `$aws/things/{thing}/shadow` or
/// `$aws/things/{thing}/shadow/name/{shadow}`, into the thing and shadow names.
fn parse_prefix(prefix: &str) -> Option<(&str, Option<&str>)> {
    let rest = prefix.strip_prefix(THINGS_PREFIX)?;
    // A prefix has at most four levels after `$aws/things/`; a fixed buffer keeps this
    // per-publish check free of allocation.
    let mut levels = [""; 4];
    let mut count = 0;
    for level in rest.split('/') {
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

/// The topic prefix of a shadow: `$aws/things/{thing}/shadow` or
/// `$aws/things/{thing}/shadow/name/{shadow}`.
pub fn shadow_prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        Some(name) => format!("{THINGS_PREFIX}{thing}/shadow/name/{name}"),
        None => format!("{THINGS_PREFIX}{thing}/shadow"),
    }
}

/// The topic on which a shadow's pending changes (`/update/delta` documents) are published.
pub fn delta_topic(thing: &str, shadow: Option<&str>) -> String {
    format!("{}/update/delta", shadow_prefix(thing, shadow))
}

/// The topic on which the before-and-after document of every accepted update is published.
pub fn documents_topic(thing: &str, shadow: Option<&str>) -> String {
    format!("{}/update/documents", shadow_prefix(thing, shadow))
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

/// Whether the MQTT topic filter `filter` matches the topic name `topic` (MQTT 3.1.1 section
/// 4.7, unchanged in MQTT 5).
///
/// `+` matches exactly one level (which may be empty) and `#`, only valid as the whole last
/// level, matches its parent level and any number of levels below. A filter starting with a
/// wildcard does not match a topic starting with `$`, so `#` does not see `$aws/...`. An invalid
/// filter (`a#`, `#/a`, `a+`) or a topic containing wildcards matches nothing.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if filter.is_empty() || topic.is_empty() || topic.contains(['+', '#']) {
        return false;
    }
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    let mut filter_levels = filter.split('/').peekable();
    while let Some(level) = filter_levels.next() {
        match level {
            "#" => return filter_levels.peek().is_none(),
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            _ if level.contains(['+', '#']) => return false,
            _ => {
                if topic_levels.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(
        thing: &'static str,
        shadow: Option<&'static str>,
        op: ShadowOp,
    ) -> Option<ShadowTopic<'static>> {
        Some(ShadowTopic { thing, shadow, op })
    }

    #[test]
    fn parses_the_classic_and_named_request_topics() {
        for op in [ShadowOp::Get, ShadowOp::Update, ShadowOp::Delete] {
            let classic = format!("$aws/things/pump-7/shadow/{}", op.as_str());
            assert_eq!(parse_request(&classic), request("pump-7", None, op));
            let named = format!("$aws/things/pump-7/shadow/name/config/{}", op.as_str());
            assert_eq!(parse_request(&named), request("pump-7", Some("config"), op));
        }
        // A thing called "name" and a shadow called "get" are still names, not keywords.
        assert_eq!(
            parse_request("$aws/things/name/shadow/name/get/get"),
            request("name", Some("get"), ShadowOp::Get)
        );
    }

    #[test]
    fn rejects_response_topics_and_anything_else() {
        for topic in [
            "$aws/things/pump-7/shadow/get/accepted",
            "$aws/things/pump-7/shadow/update/rejected",
            "$aws/things/pump-7/shadow/update/delta",
            "$aws/things/pump-7/shadow/update/documents",
            "$aws/things/pump-7/shadow/name/config/update/delta",
            "$aws/things/pump-7/shadow/name/update",
            "$aws/things/pump-7/shadow/list",
            "$aws/things/pump-7/shadow",
            "$aws/things/pump-7/Shadow/get",
            "$aws/things/pump-7/shadow/GET",
            "$aws/things//shadow/get",
            "$aws/things/pump-7/shadow/name//get",
            "$aws/things/+/shadow/get",
            "$aws/things/#",
            "$aws/things/pump-7/shadow/name/+/get",
            "$aws/things/pu#mp/shadow/get",
            "aws/things/pump-7/shadow/get",
            "/$aws/things/pump-7/shadow/get",
            "$aws/things/pump-7/shadow/get/",
            "$aws/things/pump-7/shadow/name/a/b/get",
            "",
        ] {
            assert_eq!(parse_request(topic), None, "{topic}");
        }
    }

    #[test]
    fn names_response_delta_and_documents_topics() {
        let classic = parse_request("$aws/things/pump-7/shadow/update").unwrap();
        assert_eq!(
            classic.response("accepted"),
            "$aws/things/pump-7/shadow/update/accepted"
        );
        let named = parse_request("$aws/things/pump-7/shadow/name/config/delete").unwrap();
        assert_eq!(
            named.response("rejected"),
            "$aws/things/pump-7/shadow/name/config/delete/rejected"
        );
        assert_eq!(
            delta_topic("pump-7", None),
            "$aws/things/pump-7/shadow/update/delta"
        );
        assert_eq!(
            documents_topic("pump-7", Some("config")),
            "$aws/things/pump-7/shadow/name/config/update/documents"
        );
        // What the hub publishes is never mistaken for a request when it comes back around.
        for topic in [
            classic.response("accepted"),
            delta_topic("pump-7", Some("config")),
            documents_topic("pump-7", None),
        ] {
            assert_eq!(parse_request(&topic), None, "{topic}");
        }
    }

    #[test]
    fn recognises_exact_delta_topics_only() {
        assert_eq!(
            parse_delta("$aws/things/pump-7/shadow/update/delta"),
            Some(("pump-7", None))
        );
        assert_eq!(
            parse_delta("$aws/things/pump-7/shadow/name/config/update/delta"),
            Some(("pump-7", Some("config")))
        );
        for topic in [
            "$aws/things/+/shadow/update/delta",
            "$aws/things/pump-7/shadow/name/+/update/delta",
            "$aws/things/pump-7/shadow/#",
            "$aws/things/pump-7/shadow/update/documents",
            "$aws/things/pump-7/shadow/update",
            "$aws/things/pump-7/shadow/name/update/delta",
            "$aws/things/pump-7/shadow/update/delta/x",
            "$aws/things//shadow/update/delta",
        ] {
            assert_eq!(parse_delta(topic), None, "{topic}");
        }
        for shadow in [None, Some("config")] {
            assert_eq!(
                parse_delta(&delta_topic("pump-7", shadow)),
                Some(("pump-7", shadow))
            );
        }
    }

    #[test]
    fn topics_map_to_twins_and_back() {
        let classic = twin_device("pump-7", None).unwrap();
        assert_eq!(classic.as_str(), "pump-7");
        assert_eq!(shadow_of(&classic), ("pump-7", None));

        let named = parse_request("$aws/things/pump-7/shadow/name/config/get")
            .unwrap()
            .device()
            .unwrap();
        assert_eq!(named.as_str(), "pump-7/shadows/config");
        assert_eq!(shadow_of(&named), ("pump-7", Some("config")));

        // Parsing accepts any level; the id alphabet is enforced when the twin is named.
        let odd = parse_request("$aws/things/pump 7/shadow/get").unwrap();
        assert!(odd.device().is_err());
        assert!(twin_device("pump-7", Some("a.b")).is_err());
        assert!(twin_device("pump-7", Some(&"x".repeat(65))).is_err());
    }

    #[test]
    fn filters_match_as_the_mqtt_specification_describes() {
        let cases = [
            // Examples of MQTT 3.1.1 section 4.7.1.
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("+", "sport", true),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("+/tennis/#", "sport/tennis/player1/ranking", true),
            ("sport/tennis", "sport/tennis", true),
            ("sport/tennis", "sport/Tennis", false),
            ("sport/tennis", "sport/tennis/", false),
            ("sport/tennis/", "sport/tennis", false),
            // Section 4.7.2: first-level wildcards do not see `$` topics.
            ("#", "$SYS/broker", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            (
                "$aws/things/+/shadow/update/delta",
                "$aws/things/p/shadow/update/delta",
                true,
            ),
            (
                "$aws/things/p/shadow/#",
                "$aws/things/p/shadow/update/delta",
                true,
            ),
            (
                "$aws/things/p/shadow/+",
                "$aws/things/p/shadow/update/delta",
                false,
            ),
            // Invalid filters and topics match nothing.
            ("sport/tennis#", "sport/tennis#", false),
            ("sport/tennis#", "sport/tennis", false),
            ("sport/#/ranking", "sport/tennis/ranking", false),
            ("sport+", "sport+", false),
            ("sport/+x", "sport/ax", false),
            ("", "", false),
            ("#", "", false),
            ("sport/+", "sport/+", false),
            ("sport/#", "sport/#", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                filter_matches(filter, topic),
                expected,
                "{filter:?} against {topic:?}"
            );
        }
    }

    /// Topics of one to five levels of `[a-c]{0,2}`, the first optionally starting with `$`.
    fn arb_topic() -> impl Strategy<Value = Vec<String>> {
        (any::<bool>(), prop::collection::vec("[a-c]{0,2}", 1..5))
            .prop_map(|(dollar, mut levels)| {
                if dollar {
                    levels[0].insert(0, '$');
                }
                levels
            })
            .prop_filter("a topic is at least one character", |levels| {
                !levels.join("/").is_empty()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A topic name without wildcards is a filter matching exactly itself.
        #[test]
        fn a_topic_matches_itself_and_no_other(levels in arb_topic(), other in arb_topic()) {
            let topic = levels.join("/");
            let other = other.join("/");
            prop_assert!(filter_matches(&topic, &topic));
            prop_assert_eq!(filter_matches(&topic, &other), topic == other);
        }

        /// Replacing levels with `+` keeps the match, except at the first level of a `$` topic.
        #[test]
        fn plus_stands_for_any_one_level(levels in arb_topic(), mask in any::<u8>()) {
            let topic = levels.join("/");
            let filter: Vec<&str> = levels
                .iter()
                .enumerate()
                .map(|(i, level)| if mask & (1 << i) != 0 { "+" } else { level.as_str() })
                .collect();
            let dollar_hidden = topic.starts_with('$') && filter[0] == "+";
            prop_assert_eq!(filter_matches(&filter.join("/"), &topic), !dollar_hidden);
            // One level more or fewer never matches without `#`.
            let longer = format!("{}/+", filter.join("/"));
            prop_assert!(!filter_matches(&longer, &topic));
            if filter.len() > 1 {
                prop_assert!(!filter_matches(&filter[..filter.len() - 1].join("/"), &topic));
            }
        }

        /// `prefix/#` matches the prefix itself and everything below it.
        #[test]
        fn hash_matches_the_parent_and_all_below(levels in arb_topic(), keep in 0usize..6) {
            let topic = levels.join("/");
            let keep = keep.min(levels.len());
            let filter = if keep == 0 {
                "#".to_owned()
            } else {
                format!("{}/#", levels[..keep].join("/"))
            };
            let dollar_hidden = keep == 0 && topic.starts_with('$');
            prop_assert_eq!(filter_matches(&filter, &topic), !dollar_hidden);
        }
    }
}

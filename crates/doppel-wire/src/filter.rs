//! MQTT topic filters (MQTT 3.1.1 section 4.7, unchanged in MQTT 5): whether a filter matches a
//! topic name, covers another filter, or shares a topic with it.

/// Whether the MQTT topic filter `filter` matches the topic name `topic` (MQTT 3.1.1 section
/// 4.7, unchanged in MQTT 5).
///
/// `+` matches exactly one level (which may be empty) and `#`, only valid as the whole last
/// level, matches its parent level and any number of levels below. A filter starting with a
/// wildcard does not match a topic starting with `$`, so `#` does not see `$aws/...`. An invalid
/// filter (`a#`, `#/a`, `a+`) or a topic containing wildcards matches nothing.
pub fn matches(filter: &str, topic: &str) -> bool {
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

/// Does every topic matched by `filter` also match `pattern`?
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut filter = filter.split('/');
    loop {
        match (pattern.next(), filter.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(want), Some(level)) if want == level && level != "+" && level != "#" => {}
            _ => return false,
        }
    }
}

/// Is there a topic both filters match?
pub fn intersect(a: &str, b: &str) -> bool {
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filter_relations() {
        assert!(covers("a/#", "a/b/+"));
        assert!(covers("a/+/c", "a/x/c"));
        assert!(!covers("a/+/c", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(intersect("a/+/c", "a/#"));
        assert!(intersect("+/b", "a/+"));
        assert!(!intersect("a/b", "a/c"));
        assert!(!intersect("a/b", "a/b/c"));
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
                matches(filter, topic),
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
            prop_assert!(matches(&topic, &topic));
            prop_assert_eq!(matches(&topic, &other), topic == other);
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
            prop_assert_eq!(matches(&filter.join("/"), &topic), !dollar_hidden);
            // One level more or fewer never matches without `#`.
            let longer = format!("{}/+", filter.join("/"));
            prop_assert!(!matches(&longer, &topic));
            if filter.len() > 1 {
                prop_assert!(!matches(&filter[..filter.len() - 1].join("/"), &topic));
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
            prop_assert_eq!(matches(&filter, &topic), !dollar_hidden);
        }
    }
}

//! Tenant isolation inside one broker: every tenant's topics live under a prefix of their own.
//!
//! A client never sees the prefix. Its topics and filters are mounted on the way in (publish,
//! subscribe, unsubscribe) and messages are unmounted on the way out (delivery), so two tenants
//! can both use `sensors/#` or `$aws/things/pump-7/...` without seeing each other. Topics that
//! begin with `$` go to a namespace of their own under the prefix, which keeps MQTT's rule that
//! `#` and `+` at the first level never match them; their `$` is dropped there, because the
//! broker accepts `$` only at the start of a topic.

use std::borrow::Cow;

/// The root of every mounted topic. Clients cannot reach it: whatever they send is mounted
/// below their own tenant, so a client's `$tenants/other/...` becomes
/// `$tenants/mine/s/$tenants/other/...`.
const ROOT: &str = "$tenants/";
/// Namespace of ordinary topics inside a tenant.
const ORDINARY: &str = "/n/";
/// Namespace of `$`-topics inside a tenant.
const DOLLAR: &str = "/s/";
/// Where denied publishes go: a prefix no filter can be mounted onto, so nobody receives them.
/// (The broker offers no way to drop a message from the publish hook, and last wills never see
/// the ACL check.)
pub const VOID: &str = "$void/";

/// The broker's topic (or filter) for `topic` as `tenant` sees it.
pub fn mount(tenant: &str, topic: &str) -> String {
    let (namespace, topic) = match topic.strip_prefix('$') {
        Some(rest) => (DOLLAR, rest),
        None => (ORDINARY, topic),
    };
    let mut mounted = String::with_capacity(ROOT.len() + tenant.len() + 3 + topic.len());
    mounted.push_str(ROOT);
    mounted.push_str(tenant);
    mounted.push_str(namespace);
    mounted.push_str(topic);
    mounted
}

/// The tenant and the client's own topic of a mounted topic; `None` for any other topic.
pub fn unmount(mounted: &str) -> Option<(&str, Cow<'_, str>)> {
    let rest = mounted.strip_prefix(ROOT)?;
    let slash = rest.find('/')?;
    let (tenant, rest) = rest.split_at(slash);
    if let Some(topic) = rest.strip_prefix(ORDINARY) {
        return Some((tenant, Cow::Borrowed(topic)));
    }
    let topic = rest.strip_prefix(DOLLAR)?;
    Some((tenant, Cow::Owned(format!("${topic}"))))
}

/// Where publishes to invalid topic names go (wildcards in a topic name are a protocol
/// violation, which rmqtt does not check); the ACL hook closes the connection for them.
pub const INVALID: &str = "$invalid/";

/// Where retained publishes to `$` topics go: refused (and so neither applied nor retained),
/// without ending the connection.
pub const RETAIN_REFUSED: &str = "$retain-refused/";

/// The topic a denied publish is sent to instead.
pub fn void(topic: &str) -> String {
    format!("{VOID}{topic}")
}

/// Whether `topic` may be published to: not empty, no wildcards, no NUL (MQTT 4.7.3).
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_wire::filter::matches as filter_matches;

    #[test]
    fn mounting_round_trips_and_keeps_tenants_apart() {
        for topic in ["sensors/t", "$aws/things/x/shadow/update", "/lead", "a//b"] {
            let mounted = mount("acme", topic);
            assert_eq!(unmount(&mounted), Some(("acme", Cow::Borrowed(topic))));
            assert!(
                !mounted[1..].contains('$'),
                "the broker takes $ only at the start"
            );
        }
        assert!(!filter_matches(&mount("a", "#"), &mount("b", "x")));
        assert!(filter_matches(&mount("a", "#"), &mount("a", "x/y")));
        assert_eq!(unmount("plain/topic"), None);
        assert_eq!(unmount("$tenants/acme/z/x"), None);
    }

    #[test]
    fn topic_names_hold_no_wildcards() {
        assert!(is_topic_name("a/b"));
        assert!(is_topic_name("$aws/things/x/shadow/update"));
        for bad in ["", "a/+", "#", "a/b#", "a\0b"] {
            assert!(!is_topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn first_level_wildcards_still_skip_dollar_topics() {
        let aws = mount("t", "$aws/things/x/shadow/update/delta");
        assert!(!filter_matches(&mount("t", "#"), &aws));
        assert!(!filter_matches(&mount("t", "+/things/#"), &aws));
        assert!(filter_matches(&mount("t", "$aws/things/+/shadow/#"), &aws));
    }

    #[test]
    fn a_client_cannot_reach_another_tenant_by_naming_its_prefix() {
        let sneaky = mount("mine", "$tenants/other/n/secret");
        assert_eq!(
            unmount(&sneaky),
            Some(("mine", "$tenants/other/n/secret".into()))
        );
        assert!(!filter_matches(&sneaky, &mount("other", "secret")));
        assert!(!filter_matches(&mount("mine", "#"), &void("x")));
    }
}

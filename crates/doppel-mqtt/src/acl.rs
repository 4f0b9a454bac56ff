//! Who may publish and subscribe to what, inside one tenant (tenants are kept apart by
//! [`crate::mount`] before any of this runs).
//!
//! Reserved topics are fixed rules: `$aws/things/{thing}/...` and `$doppel/things/{thing}/...`
//! belong to that thing and to applications; presence events under `$aws/events/presence/` are
//! readable by every client and written only by the hub; other `$` topics are for applications.
//! Ordinary topics are shared within the tenant under the configured [`AclRule`]s.

use doppel_wire::Topic;
use doppel_wire::filter;
use doppel_wire::shadow::ShadowRequest;
use doppel_wire::topic::FilterScope;
use serde::{Deserialize, Serialize};

/// What a client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
}

/// The kind of client, as far as rights go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A device with credentials (or a client certificate): its thing is its device id.
    Device { thing: String },
    /// An application: every thing of its tenant.
    App,
    /// A client without credentials (only when anonymous access is on): its thing is its client
    /// id, when that is a valid device id.
    Anonymous { thing: Option<String> },
}

impl Role {
    fn thing(&self) -> Option<&str> {
        match self {
            Role::Device { thing } => Some(thing),
            Role::Anonymous { thing } => thing.as_deref(),
            Role::App => None,
        }
    }
}

/// One configured rule for ordinary (non-`$`) topics. Rules are tried in order; the first that
/// applies decides; when none applies, the topic is allowed (topics are shared within a tenant
/// unless rules say otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub permission: Permission,
    #[serde(default)]
    pub access: AccessRule,
    #[serde(default)]
    pub clients: Clients,
    /// A topic filter; `{thing}` stands for the client's own thing (a rule with `{thing}` never
    /// applies to applications).
    pub topic: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRule {
    Publish,
    Subscribe,
    #[default]
    Both,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clients {
    Devices,
    Apps,
    Anonymous,
    #[default]
    All,
}

impl AclRule {
    /// Checks the rule's topic filter; the error says what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        let topic = &self.topic;
        if topic.is_empty() || topic.starts_with('$') {
            return Err(format!(
                "ACL rule topic {topic:?} must be a non-empty filter of ordinary topics (reserved $ topics have fixed rules)"
            ));
        }
        let levels: Vec<&str> = topic.split('/').collect();
        for (index, level) in levels.iter().enumerate() {
            let wildcard_misused = (level.contains('#')
                && (*level != "#" || index + 1 != levels.len()))
                || (level.contains('+') && *level != "+");
            if wildcard_misused {
                return Err(format!("ACL rule topic {topic:?} misplaces a wildcard"));
            }
        }
        Ok(())
    }

    fn applies_to(&self, role: &Role, access: Access) -> bool {
        let client = matches!(
            (self.clients, role),
            (Clients::All, _)
                | (Clients::Devices, Role::Device { .. })
                | (Clients::Apps, Role::App)
                | (Clients::Anonymous, Role::Anonymous { .. })
        );
        let action = matches!(
            (self.access, access),
            (AccessRule::Both, _)
                | (AccessRule::Publish, Access::Publish)
                | (AccessRule::Subscribe, Access::Subscribe)
        );
        client && action
    }
}

/// May `role` publish to `topic`, the client's own topic name (unmounted) as [`Topic::parse`]
/// read it into `parsed`?
pub fn may_publish(rules: &[AclRule], role: &Role, parsed: &Topic<'_>, topic: &str) -> bool {
    let own = |thing: &str| role.thing() == Some(thing);
    match *parsed {
        Topic::Ordinary => ordinary_allowed(rules, role, Access::Publish, topic),
        Topic::ShadowRequest(ShadowRequest { thing, .. })
        | Topic::SyncRequest { thing }
        | Topic::Thing { thing } => *role == Role::App || own(thing),
        // The hub delivers commands and the thing acknowledges them (applications queue over
        // HTTP and follow `$doppel/events/commands/...`).
        Topic::CommandAck { thing, .. } => own(thing),
        // What the hub publishes comes from the hub alone: a client that could publish shadow
        // answers could feed applications forged state, sync answers carry the replicated
        // state an edge agent merges, and a forged delivery would be a command nobody queued.
        Topic::ShadowAnswer { .. }
        | Topic::CommandDelivery { .. }
        | Topic::CommandAckAnswer { .. }
        | Topic::SyncAnswer { .. }
        | Topic::Presence { .. }
        | Topic::CommandEvent { .. }
        | Topic::HubReserved => false,
        Topic::Reserved => *role == Role::App,
    }
}

/// May `role` subscribe to `filter`, the client's own (unmounted)?
pub fn may_subscribe(rules: &[AclRule], role: &Role, filter: &str) -> bool {
    if !filter.starts_with('$') {
        return ordinary_allowed(rules, role, Access::Subscribe, filter);
    }
    // The thing level must be the client's own, literally: `+` would reach others.
    let own = |thing: Option<&str>| thing.is_some() && role.thing() == thing;
    match FilterScope::of(filter) {
        // Command topics are the thing's alone, applications' included.
        FilterScope::Commands { thing } => own(thing),
        FilterScope::Things { thing } => *role == Role::App || own(thing),
        // Presence is readable by every client of the tenant.
        FilterScope::AwsEvents => true,
        // Hub events about any device (its commands, say) are for applications.
        FilterScope::DoppelEvents | FilterScope::Reserved => *role == Role::App,
    }
}

/// The configured rules on an ordinary topic name (to publish) or filter (to subscribe).
fn ordinary_allowed(rules: &[AclRule], role: &Role, access: Access, topic: &str) -> bool {
    for rule in rules {
        if !rule.applies_to(role, access) {
            continue;
        }
        let pattern = if rule.topic.contains("{thing}") {
            match role.thing() {
                Some(thing) => rule.topic.replace("{thing}", thing),
                None => continue,
            }
        } else {
            rule.topic.clone()
        };
        let applies = match (access, rule.permission) {
            (Access::Publish, _) => filter::matches(&pattern, topic),
            // An allow must cover everything the filter could bring; a deny applies as soon as
            // the filter could bring anything it forbids.
            (Access::Subscribe, Permission::Allow) => filter::covers(&pattern, topic),
            (Access::Subscribe, Permission::Deny) => filter::intersect(&pattern, topic),
        };
        if applies {
            return rule.permission == Permission::Allow;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ACL's answer for `access`, as the hooks ask it: a topic name to publish is parsed
    /// first.
    fn allowed(rules: &[AclRule], role: &Role, access: Access, topic: &str) -> bool {
        match access {
            Access::Publish => may_publish(rules, role, &Topic::parse(topic), topic),
            Access::Subscribe => may_subscribe(rules, role, topic),
        }
    }

    fn device(thing: &str) -> Role {
        Role::Device {
            thing: thing.into(),
        }
    }

    fn rule(permission: Permission, access: AccessRule, clients: Clients, topic: &str) -> AclRule {
        AclRule {
            permission,
            access,
            clients,
            topic: topic.into(),
        }
    }

    #[test]
    fn reserved_topics_belong_to_their_thing_and_to_applications() {
        let pump = device("pump-7");
        for access in [Access::Publish, Access::Subscribe] {
            assert!(allowed(
                &[],
                &pump,
                access,
                "$aws/things/pump-7/shadow/update"
            ));
            assert!(allowed(
                &[],
                &pump,
                access,
                "$doppel/things/pump-7/commands/1/ack"
            ));
            assert!(!allowed(
                &[],
                &pump,
                access,
                "$aws/things/pump-8/shadow/update"
            ));
            assert!(!allowed(&[], &pump, access, "$aws/things/+/shadow/update"));
            assert!(!allowed(&[], &pump, access, "$aws/things/#"));
            assert!(!allowed(&[], &pump, access, "$aws/#"));
            let any_thing = match access {
                Access::Subscribe => "$aws/things/+/shadow/#",
                Access::Publish => "$aws/things/pump-8/shadow/update",
            };
            assert!(allowed(&[], &Role::App, access, any_thing));
        }
        assert!(allowed(
            &[],
            &pump,
            Access::Subscribe,
            "$aws/things/pump-7/shadow/#"
        ));
        let nameless = Role::Anonymous { thing: None };
        assert!(!allowed(
            &[],
            &nameless,
            Access::Publish,
            "$aws/things/x/shadow/get"
        ));
    }

    #[test]
    fn command_topics_are_the_things_alone_and_events_the_applications() {
        let pump = device("pump-7");
        let sub = Access::Subscribe;
        let publish = Access::Publish;
        assert!(allowed(&[], &pump, sub, "$doppel/things/pump-7/commands/+"));
        assert!(allowed(&[], &pump, sub, "$doppel/things/pump-7/#"));
        assert!(!allowed(
            &[],
            &pump,
            sub,
            "$doppel/things/pump-8/commands/+"
        ));
        assert!(
            !allowed(&[], &pump, publish, "$doppel/things/pump-7/commands/1"),
            "a device cannot forge a delivery"
        );
        assert!(!allowed(
            &[],
            &pump,
            publish,
            "$doppel/things/pump-7/commands/1/ack/accepted"
        ));
        assert!(!allowed(
            &[],
            &pump,
            publish,
            "$doppel/things/pump-8/commands/1/ack"
        ));
        for access in [sub, publish] {
            assert!(!allowed(
                &[],
                &Role::App,
                access,
                "$doppel/things/pump-7/commands/1"
            ));
        }
        assert!(!allowed(&[], &Role::App, sub, "$doppel/things/#"));
        assert!(allowed(&[], &Role::App, sub, "$doppel/things/+/jobs/#"));
        assert!(allowed(&[], &Role::App, sub, "$doppel/events/commands/#"));
        assert!(!allowed(
            &[],
            &Role::App,
            publish,
            "$doppel/events/commands/x/queued"
        ));
        assert!(!allowed(&[], &pump, sub, "$doppel/events/commands/#"));
    }

    #[test]
    fn presence_is_readable_by_all_and_written_by_nobody() {
        for role in [device("d"), Role::App, Role::Anonymous { thing: None }] {
            assert!(allowed(
                &[],
                &role,
                Access::Subscribe,
                "$aws/events/presence/connected/+"
            ));
            assert!(!allowed(
                &[],
                &role,
                Access::Publish,
                "$aws/events/presence/connected/x"
            ));
        }
        assert!(!allowed(&[], &device("d"), Access::Subscribe, "$SYS/#"));
        assert!(allowed(&[], &Role::App, Access::Subscribe, "$SYS/#"));
    }

    #[test]
    fn rules_decide_in_order_and_wildcard_subscriptions_cannot_slip_past_a_deny() {
        let rules = [
            rule(
                Permission::Allow,
                AccessRule::Both,
                Clients::Devices,
                "telemetry/{thing}/#",
            ),
            rule(
                Permission::Deny,
                AccessRule::Both,
                Clients::Devices,
                "telemetry/#",
            ),
            rule(
                Permission::Deny,
                AccessRule::Subscribe,
                Clients::All,
                "secret/#",
            ),
        ];
        let pump = device("pump-7");
        assert!(allowed(
            &rules,
            &pump,
            Access::Publish,
            "telemetry/pump-7/temp"
        ));
        assert!(!allowed(
            &rules,
            &pump,
            Access::Publish,
            "telemetry/pump-8/temp"
        ));
        assert!(allowed(
            &rules,
            &pump,
            Access::Subscribe,
            "telemetry/pump-7/#"
        ));
        assert!(!allowed(
            &rules,
            &pump,
            Access::Subscribe,
            "telemetry/+/temp"
        ));
        assert!(
            !allowed(&rules, &pump, Access::Subscribe, "#"),
            "# would bring secret/..."
        );
        assert!(allowed(&rules, &pump, Access::Publish, "secret/x"));
        assert!(allowed(
            &rules,
            &Role::App,
            Access::Publish,
            "telemetry/pump-8/temp"
        ));
        assert!(allowed(&rules, &pump, Access::Subscribe, "other/#"));
    }

    #[test]
    fn rule_topics_are_validated() {
        let bad =
            |topic: &str| rule(Permission::Deny, AccessRule::Both, Clients::All, topic).validate();
        assert!(bad("a/#").is_ok());
        assert!(bad("").is_err());
        assert!(bad("$aws/x").is_err());
        assert!(bad("a/#/b").is_err());
        assert!(bad("a/b+").is_err());
    }
}

//! The broker's hooks: rmqtt's events, dispatched in one match to the [`BrokerContext`] and to
//! the request handlers.
//!
//! The broker (rmqtt) calls these hooks in this order for a client's publish: `MessagePublish`
//! (we answer requests, then mount the topic, or send a denied message to the void), then
//! `MessagePublishCheckAcl` (rejects what went to the void, so MQTT 5 clients get "not
//! authorized"). For a subscribe: `ClientSubscribe` (mount), then `ClientSubscribeCheckAcl`.
//! Each delivery passes `MessageDelivered` (unmount), so clients only ever see their own topics.

use crate::commands;
use crate::context::BrokerContext;
use crate::identity::Identity;
use crate::metric;
use crate::mount;
use crate::shadow::service;
use crate::sync;
use crate::trace;
use async_trait::async_trait;
use doppel_wire::Topic;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, From, Publish, PublishAclResult, PublishResult, SubscribeAclResult,
};
use std::sync::Arc;
use std::time::Instant;

/// The broker hook: dispatches each event to the [`BrokerContext`].
pub(crate) struct Hooks(pub Arc<BrokerContext>);

impl Hooks {
    async fn on_publish(&self, session: &Session, from: &From, publish: &Publish) -> Publish {
        // Where `doppel_sync_latency_seconds` starts.
        let received = Instant::now();
        if from.is_custom() {
            metrics::counter!(metric::MESSAGES_RECEIVED).increment(1);
        }
        let mut rewritten = Publish::clone(publish);
        let topic = publish.topic.to_string();
        if !mount::is_topic_name(&topic) {
            rewritten.topic = format!("{}{topic}", mount::INVALID).into();
            return rewritten;
        }
        if publish.retain && topic.starts_with('$') {
            // As AWS IoT: the hub's topics are requests and answers, never state to retain.
            rewritten.topic = format!("{}{topic}", mount::RETAIN_REFUSED).into();
            return rewritten;
        }
        // Parsed once: the ACL decides on it and the dispatch below serves it.
        let parsed = Topic::parse(&topic);
        let allowed = self.0.publisher(session, &parsed, &topic).await;
        rewritten.topic = match allowed {
            Some(identity) => {
                // Only what a client sent is served; a last will, say, is only routed.
                if from.is_custom() {
                    self.serve(session, &identity, parsed, publish, received)
                        .await;
                }
                mount::mount(identity.tenant.as_str(), &topic).into()
            }
            None => mount::void(&topic).into(),
        };
        rewritten
    }

    /// Serves a request a client was allowed to publish; any other topic is the broker's alone
    /// to route. A shadow request is answered in the connection's
    /// [`Pipeline`](crate::pipeline::Pipeline): the hook returns once its write is queued in the
    /// engine, so the connection's next message is read while it commits. The other requests
    /// are rare and served inline, after the connection's earlier answers, so that they too see
    /// the connection's earlier writes.
    async fn serve(
        &self,
        session: &Session,
        identity: &Arc<Identity>,
        topic: Topic<'_>,
        publish: &Publish,
        received: Instant,
    ) {
        let payload = &publish.payload;
        match topic {
            Topic::ShadowRequest(request) => {
                let trace = trace::traceparent(publish.properties.as_ref());
                let prepared = service::prepare(
                    &*self.0,
                    identity.clone(),
                    request,
                    payload,
                    received,
                    trace,
                )
                .await;
                let broker = self.0.clone();
                self.0
                    .pipeline(session)
                    .await
                    .then(async move { prepared.answer(&*broker).await })
                    .await;
            }
            Topic::CommandAck { thing, id } => {
                self.0.drain_pipeline(session).await;
                commands::handle_ack(&*self.0, identity, thing, id, payload).await;
            }
            Topic::SyncRequest { thing } => {
                self.0.drain_pipeline(session).await;
                sync::handle(&*self.0, identity, thing, payload).await;
            }
            // Only requests are served; the ACL, which matches every kind of topic by name, has
            // already decided whether anything else may be published, and the broker routes it.
            _ => {}
        }
    }

    async fn on_subscribed(&self, session: &Session, mounted: &str) {
        let (Some(identity), Some((_, filter))) =
            (self.0.identity(session).await, mount::unmount(mounted))
        else {
            return;
        };
        match &identity.device {
            Some(device) if commands::brings_commands(&identity, &filter) => {
                commands::on_reconnect(&*self.0, &identity.tenant, device).await;
            }
            _ => service::delta_on_subscribe(&*self.0, &identity, &filter).await,
        }
    }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let context = &self.0;
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let result = context.authenticate(connect).await;
                if matches!(result, AuthResult::Allow(..)) && context.identify(connect).is_none() {
                    return (
                        false,
                        Some(HookResult::AuthResult(AuthResult::NotAuthorized)),
                    );
                }
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribe(session, subscribe) => match context.identity(session).await
            {
                Some(identity) => {
                    let mounted = mount::mount(identity.tenant.as_str(), &subscribe.topic_filter);
                    (false, Some(HookResult::TopicFilter(Some(mounted.into()))))
                }
                None => (true, acc),
            },
            Parameter::ClientUnsubscribe(session, unsubscribe) => {
                match context.identity(session).await {
                    Some(identity) => {
                        let mounted =
                            mount::mount(identity.tenant.as_str(), &unsubscribe.topic_filter);
                        (false, Some(HookResult::TopicFilter(Some(mounted.into()))))
                    }
                    None => (true, acc),
                }
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let result = if context
                    .may_subscribe(session, &subscribe.topic_filter)
                    .await
                {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublish(Some(session), from, publish) => {
                let rewritten = self.on_publish(session, from, publish).await;
                (false, Some(HookResult::Publish(rewritten)))
            }
            Parameter::MessagePublishCheckAcl(_, publish) => {
                let result = if publish.topic.starts_with(mount::VOID) {
                    PublishAclResult::rejected(false, Some("not authorized".into()))
                } else if publish.topic.starts_with(mount::RETAIN_REFUSED) {
                    PublishAclResult::rejected(
                        false,
                        Some("retained messages are not allowed on $ topics".into()),
                    )
                } else if publish.topic.starts_with(mount::INVALID) {
                    // A protocol violation ends the connection (MQTT 5: reason 0x90).
                    PublishAclResult(PublishResult::reason_code(
                        PublishAckReason::TopicNameInvalid,
                        Some("a topic name cannot hold wildcards".into()),
                        true,
                    ))
                } else {
                    PublishAclResult::allow()
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessageDelivered(_, _, publish) => match mount::unmount(&publish.topic) {
                Some((_, topic)) => {
                    let mut delivered = Publish::clone(publish);
                    delivered.topic = topic.as_ref().into();
                    (false, Some(HookResult::Publish(delivered)))
                }
                None => (true, acc),
            },
            Parameter::ClientConnected(session) => {
                metrics::gauge!(metric::CONNECTIONS).increment(1);
                context.live_connections.opened(&session.id.client_id);
                context.recheck_subscriptions(session).await;
                match context.identity(session).await {
                    Some(identity) => context.end_at_expiry(&identity),
                    // Its token was revoked between the login and now.
                    None => context.end_session(session).await,
                }
                context.on_presence(session, None).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                metrics::gauge!(metric::CONNECTIONS).decrement(1);
                context.live_connections.closed(&session.id.client_id);
                context.on_presence(session, Some(reason)).await;
                (true, acc)
            }
            Parameter::SessionSubscribed(session, subscribe) => {
                self.on_subscribed(session, &subscribe.topic_filter).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

//! Who a client is: authentication at connect, the identity a session keeps, and the check
//! that a resumed session holds only subscriptions its identity may have.

use super::BrokerContext;
use crate::acl::{self, AclRule};
use crate::broker::Broker;
use crate::identity::{self, Identity, TokenRefusal, username_of};
use crate::metric;
use crate::mount;
use crate::pipeline::Pipeline;
use doppel_auth::LoginOutcome;
use doppel_model::DeviceId;
use doppel_wire::Topic;
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo};
use std::sync::{Arc, PoisonError};

/// Where a session's identity is kept among its attributes once worked out.
const IDENTITY_ATTR: &str = "doppel.identity";
/// Where a session's requests in flight are kept among its attributes, from its first request.
const PIPELINE_ATTR: &str = "doppel.pipeline";

impl BrokerContext {
    pub(crate) async fn authenticate(&self, connect: &ConnectInfo) -> AuthResult {
        if let Some(cert) = connect.cert() {
            return match cert.common_name.as_deref().map(DeviceId::new) {
                Some(Ok(_)) => AuthResult::Allow(false, None),
                _ => AuthResult::NotAuthorized,
            };
        }
        match (username_of(connect), connect.password()) {
            (Some(username), Some(password))
                if identity::is_token_login(username) && self.directory.tokens.is_some() =>
            {
                self.authenticate_token(username, password)
            }
            (Some(username), Some(password)) => {
                let address = connect.id().remote_addr.map(|addr| addr.ip());
                match self.login_gate.login(username, password, address).await {
                    LoginOutcome::Accepted { credential_id, .. } => {
                        self.logins
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(connect.id().to_string(), credential_id);
                        AuthResult::Allow(false, None)
                    }
                    // Throttled logins too: rmqtt has no "connection rate exceeded" (MQTT 5
                    // 0x9F), and a guess the client cannot tell from a checked one is wasted.
                    LoginOutcome::Refused(refusal) => {
                        metrics::counter!(metric::LOGIN_FAILURES, "reason" => refusal.as_str())
                            .increment(1);
                        AuthResult::BadUsernameOrPassword
                    }
                }
            }
            (Some(_), None) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::MISSING_PASSWORD)
                    .increment(1);
                AuthResult::BadUsernameOrPassword
            }
            (None, _) if self.allow_anonymous => AuthResult::Allow(false, None),
            (None, _) => AuthResult::NotAuthorized,
        }
    }

    /// An application's login with an API token: a hash lookup, so no login gate is needed
    /// (256 random bits leave nothing to guess).
    fn authenticate_token(&self, username: &str, password: &[u8]) -> AuthResult {
        match identity::token_identity(&self.directory, username, password, self.now()) {
            Ok(_) => AuthResult::Allow(false, None),
            Err(TokenRefusal::Invalid) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::INVALID_TOKEN)
                    .increment(1);
                AuthResult::BadUsernameOrPassword
            }
            Err(TokenRefusal::NotAllowed) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::TOKEN_NOT_ALLOWED)
                    .increment(1);
                AuthResult::NotAuthorized
            }
        }
    }

    /// Who `connect` authenticated as. Only called for clients the auth hook let in.
    pub(crate) fn identify(&self, connect: &ConnectInfo) -> Option<Identity> {
        identity::identify(connect, &self.directory, self.now())
    }

    pub(crate) async fn identity(&self, session: &Session) -> Option<Arc<Identity>> {
        if let Some(known) = session
            .extra_attrs
            .read()
            .await
            .get::<Arc<Identity>>(IDENTITY_ATTR)
        {
            return Some(known.clone());
        }
        let connect = session.connect_info().await.ok()?;
        let mut identity = self.identify(&connect)?;
        identity.credential = self
            .logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&connect.id().to_string());
        let identity = Arc::new(identity);
        session
            .extra_attrs
            .write()
            .await
            .insert(IDENTITY_ATTR.into(), identity.clone());
        Some(identity)
    }

    /// The answers `session` has in flight, in order; made at its first shadow request.
    pub(crate) async fn pipeline(&self, session: &Session) -> Arc<Pipeline> {
        if let Some(known) = existing_pipeline(session).await {
            return known;
        }
        let mut attrs = session.extra_attrs.write().await;
        if let Some(known) = attrs.get::<Arc<Pipeline>>(PIPELINE_ATTR) {
            return known.clone();
        }
        let pipeline = Arc::new(Pipeline::default());
        attrs.insert(PIPELINE_ATTR.into(), pipeline.clone());
        pipeline
    }

    /// Waits until the answers `session` has in flight, if any, are sent; a session that never
    /// sent a shadow request gets no pipeline for it.
    pub(crate) async fn drain_pipeline(&self, session: &Session) {
        if let Some(pipeline) = existing_pipeline(session).await {
            pipeline.drained().await;
        }
    }

    /// The identity of `session` if it may publish on `topic` (`raw` as the client wrote it).
    pub(crate) async fn publisher(
        &self,
        session: &Session,
        topic: &Topic<'_>,
        raw: &str,
    ) -> Option<Arc<Identity>> {
        self.identity(session)
            .await
            .filter(|identity| acl::may_publish(&self.rules, &identity.role, topic, raw))
    }

    /// Whether `session` may subscribe to `mounted` (a broker filter).
    pub(crate) async fn may_subscribe(&self, session: &Session, mounted: &str) -> bool {
        self.identity(session)
            .await
            .is_some_and(|identity| subscription_allowed(&self.rules, &identity, mounted))
    }

    /// A resumed session brings the subscriptions of its previous connection. Sessions are kept
    /// per principal (see `admission`), so they are this identity's own; they are checked again
    /// all the same, so that no path can hand a subscription across tenants or past the ACL. A
    /// session holding one its identity may not have is ended, and its state dropped.
    pub(crate) async fn recheck_subscriptions(&self, session: &Session) {
        let Some(identity) = self.identity(session).await else {
            return;
        };
        let filters = match session.subscriptions().await {
            Ok(subscriptions) => subscriptions.to_topic_filters().await,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read a session's subscriptions");
                return;
            }
        };
        let foreign = filters
            .iter()
            .filter(|mounted| !subscription_allowed(&self.rules, &identity, mounted))
            .count();
        if foreign == 0 {
            return;
        }
        tracing::warn!(
            client_id = %session.id.client_id,
            principal = identity.principal,
            foreign,
            "ending a session that holds subscriptions its identity may not have"
        );
        let scx = self.scx.clone();
        let id = session.id.clone();
        // The connect still holds the session's entry; kick once it has let go.
        tokio::spawn(async move {
            let mut entry = scx.extends.shared().await.entry(id);
            if let Err(err) = entry.kick(true, true, true).await {
                tracing::warn!(error = %err, "cannot end a session with foreign subscriptions");
            }
        });
    }
}

async fn existing_pipeline(session: &Session) -> Option<Arc<Pipeline>> {
    session
        .extra_attrs
        .read()
        .await
        .get::<Arc<Pipeline>>(PIPELINE_ATTR)
        .cloned()
}

/// Whether a session of `identity` may hold the subscription `mounted` (a broker filter): it
/// lies in the identity's tenant and the ACL lets the identity subscribe to it.
fn subscription_allowed(rules: &[AclRule], identity: &Identity, mounted: &str) -> bool {
    mount::unmount(mounted).is_some_and(|(tenant, filter)| {
        tenant == identity.tenant.as_str() && acl::may_subscribe(rules, &identity.role, &filter)
    })
}

//! Ending sessions whose rights went: a removed credential, a revoked API token, an expired
//! one. Each check happens when the change is announced, not at the session's next request.

use super::BrokerContext;
use crate::broker::Broker;
use crate::identity::{Identity, TokenLogin};
use rmqtt::session::Session;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

impl BrokerContext {
    /// Ends every session that logged in with an API token as soon as it is revoked.
    pub(crate) async fn end_revoked_token_sessions(self: Arc<Self>) {
        let Some(tokens) = &self.directory.tokens else {
            return;
        };
        let mut revocations = tokens.revocations();
        while let Some(revoked) = next_revocation(&mut revocations, "token").await {
            self.end_sessions_where("its token was revoked", |identity| {
                identity
                    .token
                    .as_ref()
                    .is_some_and(|token| token.id == revoked)
            })
            .await;
        }
    }

    /// Ends a token's sessions when the token expires: they were let in with the token valid,
    /// and must not outlive it. One watch per token, however often its clients reconnect.
    pub(crate) fn end_at_expiry(self: &Arc<Self>, identity: &Identity) {
        let Some(TokenLogin {
            id,
            expires_at: Some(expires_at),
        }) = identity.token.clone()
        else {
            return;
        };
        let newly_watched = self
            .expiry_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !newly_watched {
            return;
        }
        let left = u64::try_from(expires_at.0 - self.now().0).unwrap_or(0);
        let context = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(left)).await;
            if let Some(context) = context.upgrade() {
                context
                    .expiry_watches
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                context
                    .end_sessions_where("its token expired", |identity| {
                        identity.token.as_ref().is_some_and(|token| token.id == id)
                    })
                    .await;
            }
        });
    }

    /// Kicks out `session`, which has no identity (left without rights) any more.
    pub(crate) async fn end_session(&self, session: &Session) {
        let mut entry = self.scx.extends.shared().await.entry(session.id.clone());
        if let Err(err) = entry.kick(true, true, true).await {
            tracing::warn!(error = %err, "cannot end a session that lost its identity");
        }
    }

    /// Kicks out every session whose identity `matches`, logging `why`.
    async fn end_sessions_where(&self, why: &str, matches: impl Fn(&Identity) -> bool) {
        let sessions: Vec<Session> = {
            let shared = self.scx.extends.shared().await;
            shared.iter().filter_map(|entry| entry.session()).collect()
        };
        for session in sessions {
            if self
                .identity(&session)
                .await
                .is_some_and(|identity| matches(&identity))
            {
                tracing::info!(client_id = %session.id.client_id, why, "ending a session");
                let mut entry = self.scx.extends.shared().await.entry(session.id.clone());
                if let Err(err) = entry.kick(true, true, true).await {
                    tracing::warn!(error = %err, why, "cannot end a session");
                }
            }
        }
    }

    /// Ends every session that logged in with a credential as soon as it is removed.
    pub(crate) async fn end_revoked_sessions(self: Arc<Self>) {
        let mut revocations = self.registry.revocations();
        while let Some(revoked) = next_revocation(&mut revocations, "credential").await {
            tracing::info!(
                username = revoked.username,
                "a credential was removed; ending its sessions"
            );
            self.end_sessions_where("its credential was removed", |identity| {
                identity.credential.as_deref() == Some(revoked.credential_id.as_str())
            })
            .await;
        }
    }
}

/// The next revocation announced on `revocations`; `None` once the registry is gone. Missed
/// ones (the receiver lagged) are logged: their sessions stay until they end by themselves.
async fn next_revocation<T: Clone>(
    revocations: &mut tokio::sync::broadcast::Receiver<T>,
    what: &str,
) -> Option<T> {
    loop {
        match revocations.recv().await {
            Ok(revoked) => return Some(revoked),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(
                    missed,
                    what,
                    "missed revocations; their sessions stay connected until they end"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}

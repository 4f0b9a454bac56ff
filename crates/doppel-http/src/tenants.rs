//! `GET /v1/tenants`: the tenants that hold something, with how much. A tenant is no record of
//! its own: its first twin, credential or token makes it, so a mistyped tenant id in a write
//! makes a new one. This list is where an operator (and the CLI's warning) sees which exist.

use crate::AppState;
use crate::auth::{Authentication, Caller};
use crate::problem::ApiError;
use axum::Router;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_auth::TenantScope;
use doppel_model::TenantId;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants", get(list))
}

/// What one tenant holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Holdings {
    /// Live twins, named shadows included.
    twins: usize,
    /// MQTT credentials of its devices and applications.
    credentials: usize,
    /// API tokens scoped to it (not those of every tenant), expired ones included, as
    /// `/v1/tokens` lists them.
    tokens: usize,
}

/// `{"items": [{"tenant", "twins", "credentials", "tokens"}, ...]}` in tenant order: every
/// tenant the caller's bearer covers that holds a twin, a credential or a token.
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let twins = state.engine()?.tenants();
    let credentials = state.credentials()?.registry.credentials_per_tenant();
    let tokens = match &state.authentication {
        Authentication::Tokens { tokens, .. } => tokens
            .list()
            .into_iter()
            .filter_map(|token| match token.tenant {
                TenantScope::Tenant(tenant) => Some(tenant),
                TenantScope::All => None,
            })
            .collect(),
        Authentication::Anonymous => Vec::new(),
    };
    let mut holdings = tally(twins, credentials, tokens);
    // A tenant's bearer learns nothing of the others, not even that they exist.
    if let Some(TenantScope::Tenant(own)) = caller.tenant() {
        holdings.retain(|tenant, _| tenant == own);
    }
    let items: Vec<Value> = holdings
        .iter()
        .map(|(tenant, held)| {
            json!({
                "tenant": tenant.as_str(),
                "twins": held.twins,
                "credentials": held.credentials,
                "tokens": held.tokens,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

/// The holdings of every tenant named by a twin count, a credential count or a token.
fn tally(
    twins: impl IntoIterator<Item = (TenantId, usize)>,
    credentials: impl IntoIterator<Item = (TenantId, usize)>,
    tokens: impl IntoIterator<Item = TenantId>,
) -> BTreeMap<TenantId, Holdings> {
    let mut holdings: BTreeMap<TenantId, Holdings> = BTreeMap::new();
    for (tenant, count) in twins {
        holdings.entry(tenant).or_default().twins += count;
    }
    for (tenant, count) in credentials {
        holdings.entry(tenant).or_default().credentials += count;
    }
    for tenant in tokens {
        holdings.entry(tenant).or_default().tokens += 1;
    }
    holdings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("a valid tenant id")
    }

    #[test]
    fn a_tenant_is_listed_for_whatever_it_holds_once() {
        let holdings = tally(
            [(tenant("acme"), 3)],
            [(tenant("acme"), 2), (tenant("beta"), 1)],
            [tenant("gamma"), tenant("acme"), tenant("gamma")],
        );
        let listed: Vec<(&str, Holdings)> = holdings
            .iter()
            .map(|(tenant, held)| (tenant.as_str(), *held))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "acme",
                    Holdings {
                        twins: 3,
                        credentials: 2,
                        tokens: 1
                    }
                ),
                (
                    "beta",
                    Holdings {
                        credentials: 1,
                        ..Holdings::default()
                    }
                ),
                (
                    "gamma",
                    Holdings {
                        tokens: 2,
                        ..Holdings::default()
                    }
                ),
            ]
        );
    }
}

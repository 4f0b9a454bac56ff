//! Who a connected client is: its tenant and its rights, from its credentials, its client
//! certificate or (when anonymous access is on) its client id.

use crate::acl::Role;
use doppel_auth::{Principal, PrincipalKind, Role as TokenRole, Tokens};
use doppel_model::{DeviceId, Millis, TenantId};
use rmqtt::types::ConnectInfo;

/// Separates the principal from the client's own id in the key a session is kept under. No
/// principal key holds it (tenant and device ids are `[A-Za-z0-9:_.-]`), so two principals'
/// keys never coincide whatever their clients' ids.
const SESSION_KEY_SEPARATOR: char = '|';

/// The kind of principal in the session keys of clients without credentials.
const ANONYMOUS_KIND: &str = "anonymous";

/// The principal a session key belongs to (`{tenant}/{kind}/{name}`), or `None` for an
/// anonymous client's: those are known by their client ids alone, so each is its own principal.
pub fn principal_of_session_key(session_key: &str) -> Option<&str> {
    let (principal, _) = session_key.split_once(SESSION_KEY_SEPARATOR)?;
    let (_, kind_and_name) = principal.split_once('/')?;
    (kind_and_name.strip_prefix(ANONYMOUS_KIND) != Some("/")).then_some(principal)
}

/// What identifying a client takes besides its CONNECT: the tenants of clients without a
/// principal of their own, and the API tokens applications may log in with.
#[derive(Clone)]
pub struct Directory {
    /// The tenant of clients without credentials.
    pub anonymous: TenantId,
    /// The tenant of devices that log in with a client certificate.
    pub certificate: TenantId,
    /// The hub's API tokens; `None` when the hub has none (anonymous HTTP).
    pub tokens: Option<Tokens>,
}

/// Why a token login is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Unknown, revoked or expired, or the username is no tenant id: as a wrong password.
    Invalid,
    /// A valid token that may not act here: another tenant's, or one that can only read.
    NotAllowed,
}

/// Who `connect` claims to be. The authentication hook checks the claim; this only reads it,
/// except for API tokens, whose lookup is the check (a hash and a map lookup, no Argon2).
pub fn identify(connect: &ConnectInfo, directory: &Directory, now: Millis) -> Option<Identity> {
    if let Some(cert) = connect.cert() {
        let device = DeviceId::new(cert.common_name.as_deref()?).ok()?;
        return Some(Identity::device(directory.certificate.clone(), device));
    }
    match username_of(connect) {
        Some(username) if is_token_login(username) => {
            token_identity(directory, username, connect.password()?, now).ok()
        }
        Some(username) => Principal::from_username(username).map(|p| Identity::from_principal(&p)),
        None => Some(Identity::anonymous(
            directory.anonymous.clone(),
            connect.client_id(),
        )),
    }
}

/// Whether a login is an application's with an API token: its username is a bare tenant id,
/// where credentials' usernames are `{tenant}/devices/{device}` or `{tenant}/apps/{app}`.
pub fn is_token_login(username: &str) -> bool {
    !username.contains('/')
}

/// The identity of an application logging in to `username` (a tenant id) with the API token
/// `password`. It needs a token covering that tenant with a role that may write
/// (`app-write`, `operator` or `admin`): an application's MQTT rights include publishing
/// shadow updates, so a read-only token would get more over MQTT than over HTTP.
pub fn token_identity(
    directory: &Directory,
    username: &str,
    password: &[u8],
    now: Millis,
) -> Result<Identity, TokenRefusal> {
    let tokens = directory.tokens.as_ref().ok_or(TokenRefusal::Invalid)?;
    let tenant = TenantId::new(username).map_err(|_| TokenRefusal::Invalid)?;
    let secret = std::str::from_utf8(password).map_err(|_| TokenRefusal::Invalid)?;
    let token = tokens.verify(secret, now).ok_or(TokenRefusal::Invalid)?;
    let may_write = token.roles.iter().any(|role| *role != TokenRole::AppRead);
    if !token.covers(tenant.as_str()) || !may_write {
        return Err(TokenRefusal::NotAllowed);
    }
    Ok(Identity {
        tenant,
        role: Role::App,
        device: None,
        principal: format!("token:{}", token.name),
        credential: None,
        token: Some(TokenLogin {
            id: token.id,
            expires_at: token.expires_at,
        }),
    })
}

/// The username a client logs in with. The AWS IoT Device SDKs append metrics to it as a query
/// (`name?SDK=IoTDeviceSDK/Python&Platform=...`), even when the firmware set no username, and
/// AWS IoT ignores that part; so do we. An empty name is no name (an anonymous client).
pub fn username_of(connect: &ConnectInfo) -> Option<&str> {
    connect.username().and_then(|raw| login_name(raw))
}

fn login_name(raw: &str) -> Option<&str> {
    let name = raw.split_once('?').map_or(raw, |(name, _)| name);
    (!name.is_empty()).then_some(name)
}

/// A client's identity, fixed at connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub tenant: TenantId,
    pub role: Role,
    /// The twin the client's presence is recorded on: a device's own twin, or an anonymous
    /// client's thing when its client id is a valid device id.
    pub device: Option<DeviceId>,
    /// Who changes are recorded as made by (history's `changed_by`), and AWS presence's
    /// `principalIdentifier`.
    pub principal: String,
    /// The credential a password login used: when it is removed, the session ends.
    pub credential: Option<String>,
    /// The API token a token login used: when it is revoked or expires, the session ends.
    pub token: Option<TokenLogin>,
}

/// The API token a session logged in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLogin {
    pub id: String,
    pub expires_at: Option<Millis>,
}

impl Identity {
    /// A client that authenticated with a password.
    pub fn from_principal(principal: &Principal) -> Identity {
        match &principal.kind {
            PrincipalKind::Device(device) => {
                Identity::device(principal.tenant.clone(), device.clone())
            }
            PrincipalKind::App(app) => Identity {
                tenant: principal.tenant.clone(),
                role: Role::App,
                device: None,
                principal: format!("app:{app}"),
                credential: None,
                token: None,
            },
        }
    }

    /// A device that authenticated, with a password or a client certificate.
    pub fn device(tenant: TenantId, device: DeviceId) -> Identity {
        Identity {
            tenant,
            role: Role::Device {
                thing: device.as_str().to_owned(),
            },
            principal: device.as_str().to_owned(),
            device: Some(device),
            credential: None,
            token: None,
        }
    }

    /// A client without credentials in `tenant`, named by its client id.
    pub fn anonymous(tenant: TenantId, client_id: &str) -> Identity {
        // Named shadows are reached through their device's topics, not as client ids.
        let device = DeviceId::new(client_id)
            .ok()
            .filter(|device| device.shadow_name().is_none());
        Identity {
            tenant,
            role: Role::Anonymous {
                thing: device.as_ref().map(|d| d.as_str().to_owned()),
            },
            principal: device
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), |d| d.as_str().to_owned()),
            device,
            credential: None,
            token: None,
        }
    }

    /// The key the broker keeps this principal's session with `client_id` under. Client ids
    /// are chosen by clients and are public (presence events carry them), so sessions are kept
    /// per principal: a client can only resume, or take over, a session of its own principal.
    pub fn session_key(&self, client_id: &str) -> String {
        let kind = match (&self.role, &self.token) {
            (Role::App, Some(_)) => "tokens",
            (Role::Device { .. }, _) => "devices",
            (Role::App, None) => "apps",
            (Role::Anonymous { .. }, _) => ANONYMOUS_KIND,
        };
        let name = match &self.role {
            // A token's name is free text and may hold the separator; its id cannot.
            Role::App if let Some(token) = &self.token => token.id.as_str(),
            Role::Device { thing } => thing.as_str(),
            Role::App => self
                .principal
                .strip_prefix("app:")
                .unwrap_or(&self.principal),
            // Anonymous clients are known only by their client ids: they share one space.
            Role::Anonymous { .. } => "",
        };
        format!(
            "{}/{kind}/{name}{SESSION_KEY_SEPARATOR}{client_id}",
            self.tenant.as_str()
        )
    }

    /// Whether connecting may create the client's twin: only for clients known to be devices.
    pub fn creates_twin(&self) -> bool {
        matches!(self.role, Role::Device { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::{login_name, principal_of_session_key};

    #[test]
    fn a_session_key_names_its_principal_unless_anonymous() {
        assert_eq!(
            principal_of_session_key("acme/devices/pump-1|x|pump-1"),
            Some("acme/devices/pump-1")
        );
        assert_eq!(
            principal_of_session_key("acme/tokens/tok_1|worker-3"),
            Some("acme/tokens/tok_1")
        );
        assert_eq!(principal_of_session_key("acme/anonymous/|pump-1"), None);
        assert_eq!(principal_of_session_key("no-separator"), None);
    }

    #[test]
    fn sdk_metrics_after_the_username_are_ignored() {
        assert_eq!(
            login_name("acme/devices/pump-1"),
            Some("acme/devices/pump-1")
        );
        assert_eq!(
            login_name("acme/devices/pump-1?SDK=IoTDeviceSDK/Python&Platform=Unix"),
            Some("acme/devices/pump-1")
        );
        assert_eq!(login_name("?SDK=IoTDeviceSDK/Python&Platform=Unix"), None);
        assert_eq!(login_name(""), None);
    }
}

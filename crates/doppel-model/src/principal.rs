//! Who connects: a device or an application of one tenant, and the MQTT username that names it.
//!
//! Usernames are `{tenant}/devices/{device}` and `{tenant}/apps/{app}`. Ids cannot contain `/`,
//! so a username splits into exactly three parts and every principal has exactly one username.

use crate::error::ModelError;
use crate::id::{DeviceId, TenantId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The middle part of a device's username.
const DEVICES_SEGMENT: &str = "devices";
/// The middle part of an application's username.
const APPS_SEGMENT: &str = "apps";

/// A validated application name: the same alphabet and length as a tenant or device id,
/// `[A-Za-z0-9:_.-]{1,128}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    /// Validates and wraps an application name.
    pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        // A tenant id is exactly the plain id alphabet (a device id also admits named shadows).
        match TenantId::new(value.as_str()) {
            Ok(_) => Ok(Self(value)),
            Err(ModelError::InvalidId { value, .. }) => {
                Err(ModelError::InvalidId { kind: "app", value })
            }
            Err(other) => Err(other),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AppName {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, ModelError> {
        Self::new(value)
    }
}

impl From<AppName> for String {
    fn from(name: AppName) -> String {
        name.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of client a principal is, and its name within the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// A device, named by the id of its twin. Never a named shadow: see [`Principal::check`].
    Device(DeviceId),
    /// An application that reads and changes twins on behalf of people or services.
    App(AppName),
}

impl PrincipalKind {
    /// The name within the tenant: the device id or the application name.
    pub fn name(&self) -> &str {
        match self {
            Self::Device(device) => device.as_str(),
            Self::App(app) => app.as_str(),
        }
    }

    /// The username segment of this kind: `devices` or `apps`.
    pub fn segment(&self) -> &'static str {
        match self {
            Self::Device(_) => DEVICES_SEGMENT,
            Self::App(_) => APPS_SEGMENT,
        }
    }
}

/// A client that authenticates to the hub: a device or an application of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The tenant the client belongs to; it can act on nothing outside it.
    pub tenant: TenantId,
    /// Device or application, with its name.
    pub kind: PrincipalKind,
}

impl Principal {
    /// A device principal. Fails for the twin id of a named shadow (`pump-7/shadows/config`):
    /// a shadow belongs to its device and has no identity of its own.
    pub fn device(tenant: TenantId, device: DeviceId) -> Result<Self, ModelError> {
        let principal = Self {
            tenant,
            kind: PrincipalKind::Device(device),
        };
        principal.check()?;
        Ok(principal)
    }

    /// An application principal.
    pub fn app(tenant: TenantId, app: AppName) -> Self {
        Self {
            tenant,
            kind: PrincipalKind::App(app),
        }
    }

    /// Whether this principal can exist: a device principal is a device, not a named shadow.
    /// The fields are public, so code that builds a principal from parts checks it here.
    pub fn check(&self) -> Result<(), ModelError> {
        match &self.kind {
            PrincipalKind::Device(device) if device.shadow_name().is_some() => {
                Err(ModelError::InvalidId {
                    kind: "device",
                    value: device.as_str().to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The MQTT username: `{tenant}/devices/{device}` or `{tenant}/apps/{app}`.
    pub fn username(&self) -> String {
        format!(
            "{}/{}/{}",
            self.tenant,
            self.kind.segment(),
            self.kind.name()
        )
    }

    /// Parses a username written by [`Principal::username`]; `None` for anything else.
    pub fn from_username(username: &str) -> Option<Self> {
        let mut parts = username.split('/');
        let (tenant, segment, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tenant = TenantId::new(tenant).ok()?;
        let kind = match segment {
            DEVICES_SEGMENT => PrincipalKind::Device(DeviceId::new(name).ok()?),
            APPS_SEGMENT => PrincipalKind::App(AppName::new(name).ok()?),
            _ => return None,
        };
        Some(Self { tenant, kind })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.username())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::new(t).unwrap()
    }

    #[test]
    fn usernames_round_trip_for_devices_and_apps() {
        let device =
            Principal::device(tenant("acme"), DeviceId::new("pump-7:a_b.C").unwrap()).unwrap();
        assert_eq!(device.username(), "acme/devices/pump-7:a_b.C");
        let app = Principal::app(tenant("acme"), AppName::new("dashboard").unwrap());
        assert_eq!(app.username(), "acme/apps/dashboard");
        for principal in [device, app] {
            assert_eq!(
                Principal::from_username(&principal.username()),
                Some(principal)
            );
        }
    }

    #[test]
    fn other_usernames_name_no_principal() {
        for bad in [
            "",
            "acme",
            "acme/devices",
            "acme/devices/",
            "acme/things/pump",
            "acme/devices/pump/shadows/config",
            "acme/apps/a/b",
            "/devices/pump",
            "ac me/devices/pump",
            "acme/apps/dash board",
        ] {
            assert_eq!(Principal::from_username(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn named_shadows_are_not_principals() {
        let shadow = DeviceId::new("pump-7/shadows/config").unwrap();
        assert!(Principal::device(tenant("acme"), shadow).is_err());
    }

    #[test]
    fn app_names_use_the_id_alphabet_and_say_they_are_app_names() {
        assert!(AppName::new("x".repeat(128)).is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(129)] {
            match AppName::new(bad) {
                Err(ModelError::InvalidId { kind, .. }) => assert_eq!(kind, "app"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}

//! Who a connected client is: its tenant and its rights, from its credentials, its client
//! certificate or (when anonymous access is on) its client id.

use crate::acl::Role;
use doppel_auth::{Principal, PrincipalKind};
use doppel_model::{DeviceId, TenantId};

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
        }
    }

    /// Whether connecting may create the client's twin: only for clients known to be devices.
    pub fn creates_twin(&self) -> bool {
        matches!(self.role, Role::Device { .. })
    }
}

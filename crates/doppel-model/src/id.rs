//! Tenant and device identifiers.

use crate::error::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest identifier accepted, in bytes. Matches AWS IoT's thing-name limit so that existing
/// fleets keep their names when they move to Doppel.
pub const MAX_ID_LEN: usize = 128;

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-')
}

fn validate(kind: &'static str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.bytes().all(is_id_byte) {
        return Err(ModelError::InvalidId {
            kind,
            value: value.chars().take(MAX_ID_LEN + 1).collect(),
        });
    }
    Ok(())
}

/// Longest named-shadow name; AWS IoT allows 64 characters.
pub const MAX_SHADOW_NAME_LEN: usize = 64;

/// What separates a device id from the name of one of its named shadows in the id of the
/// shadow's twin (`pump-7/shadows/config`). Device ids cannot contain `/`, so a named shadow's
/// twin never collides with a device's own twin.
pub const NAMED_SHADOW_SEPARATOR: &str = "/shadows/";

/// Shadow names follow AWS IoT: `[A-Za-z0-9:_-]{1,64}`.
fn validate_shadow_name(name: &str) -> Result<(), ModelError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SHADOW_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ModelError::InvalidId {
            kind: "shadow name",
            value: name.chars().take(MAX_SHADOW_NAME_LEN + 1).collect(),
        })
    }
}

/// A device id, or a device id and the name of one of its named shadows.
fn validate_device(value: &str) -> Result<(), ModelError> {
    match value.split_once(NAMED_SHADOW_SEPARATOR) {
        Some((device, shadow)) => {
            validate("device", device)?;
            validate_shadow_name(shadow)
        }
        None => validate("device", value),
    }
}

macro_rules! identifier {
    ($name:ident, $kind:literal, $validate:expr) => {
        #[doc = concat!("A validated ", $kind, " id: `[A-Za-z0-9:_.-]{1,128}`.")]
        ///
        /// Shared rather than owned: the hub holds each id in its twin map, its fleet index
        /// (once per indexed value) and every change in flight, and a clone of a shared id
        /// costs neither an allocation nor the memory of another copy.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates an id and copies it into a shared string.
            pub fn new(value: impl AsRef<str>) -> Result<Self, ModelError> {
                let value = value.as_ref();
                $validate(value)?;
                Ok(Self(Arc::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(value: String) -> Result<Self, ModelError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(TenantId, "tenant", |value: &str| validate("tenant", value));
identifier!(DeviceId, "device", validate_device);

impl DeviceId {
    /// The twin id of the named shadow `name` of this device: `{device}/shadows/{name}`.
    pub fn named_shadow(&self, name: &str) -> Result<DeviceId, ModelError> {
        validate_shadow_name(name)?;
        Ok(DeviceId(Arc::from(format!(
            "{}{NAMED_SHADOW_SEPARATOR}{name}",
            self.thing()
        ))))
    }

    /// The device (AWS: the thing) this twin belongs to: the id itself, or the part before the
    /// separator of a named shadow.
    pub fn thing(&self) -> &str {
        self.0
            .split_once(NAMED_SHADOW_SEPARATOR)
            .map_or(&self.0, |(thing, _)| thing)
    }

    /// The name of the named shadow this twin is, if it is one.
    pub fn shadow_name(&self) -> Option<&str> {
        self.0
            .split_once(NAMED_SHADOW_SEPARATOR)
            .map(|(_, shadow)| shadow)
    }
}

/// The identity of one twin: a device within a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TwinKey {
    pub tenant: TenantId,
    pub device: DeviceId,
}

/// Separates tenant from device in encoded keys. It cannot occur in an id, so keys of one tenant
/// sort together and a tenant's key range is exactly its prefix.
pub const KEY_SEPARATOR: u8 = 0;

impl TwinKey {
    pub fn new(tenant: TenantId, device: DeviceId) -> Self {
        Self { tenant, device }
    }

    /// The byte form used as a storage key: `tenant 0x00 device`, ordered by tenant then device.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut key = Self::tenant_prefix(&self.tenant);
        key.extend_from_slice(self.device.as_str().as_bytes());
        key
    }

    /// The prefix shared by every key of `tenant`.
    pub fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(tenant.as_str().len() + 1 + MAX_ID_LEN);
        prefix.extend_from_slice(tenant.as_str().as_bytes());
        prefix.push(KEY_SEPARATOR);
        prefix
    }

    /// Parses the byte form written by [`TwinKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let corrupt = || ModelError::CorruptRecord("twin key without a tenant separator".into());
        let split = bytes
            .iter()
            .position(|b| *b == KEY_SEPARATOR)
            .ok_or_else(corrupt)?;
        let text = |part| std::str::from_utf8(part).map_err(|_| corrupt());
        Ok(Self {
            tenant: TenantId::new(text(&bytes[..split])?)?,
            device: DeviceId::new(text(&bytes[split + 1..])?)?,
        })
    }
}

impl fmt::Display for TwinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_shadows_are_twins_of_their_own_under_the_device() {
        let device = DeviceId::new("pump-7").unwrap();
        let shadow = device.named_shadow("config").unwrap();
        assert_eq!(shadow.as_str(), "pump-7/shadows/config");
        assert_eq!(shadow.thing(), "pump-7");
        assert_eq!(shadow.shadow_name(), Some("config"));
        assert_eq!(device.shadow_name(), None);
        assert_eq!(DeviceId::new("pump-7/shadows/config").unwrap(), shadow);
        for bad in [
            "pump-7/shadows/",
            "pump-7/shadows/a.b",
            "/shadows/x",
            "a/b",
            "a/shadows/x/y",
        ] {
            assert!(DeviceId::new(bad).is_err(), "{bad}");
        }
        assert!(device.named_shadow(&"x".repeat(65)).is_err());
    }

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(DeviceId::new("pump-7:a_b.C").is_ok());
        assert!(DeviceId::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for bad in ["", "a/b", "a b", "ü", "a\0b", &"x".repeat(129)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn key_bytes_round_trip_and_sort_by_tenant_first() {
        let key =
            |t: &str, d: &str| TwinKey::new(TenantId::new(t).unwrap(), DeviceId::new(d).unwrap());
        let k = key("acme", "pump-7");
        assert_eq!(TwinKey::from_bytes(&k.to_bytes()).unwrap(), k);
        // "a" < "a-" as tenants; the separator keeps all of tenant "a" before tenant "a-".
        assert!(key("a", "zzz").to_bytes() < key("a-", "a").to_bytes());
    }
}

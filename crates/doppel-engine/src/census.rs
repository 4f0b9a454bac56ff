//! How many live twins each tenant has and how many named shadows each device has, so that
//! `limits.max_twins_per_tenant` and `limits.max_named_shadows` can refuse one more without
//! scanning anything.
//!
//! The counts change only when a twin comes to life (its first write, or a write after a
//! delete) or is deleted; writes to a live twin never touch them. A device's named shadows
//! hash to different shards, so the counts are shared by every shard behind one lock, taken
//! only at those two moments.
//!
//! A shard *admits* a twin it is about to create before committing it (the count goes up at
//! once, so two shards cannot both take the last place), gives the place back if the commit
//! fails, and *releases* a deleted twin's place once the delete is durable.

use crate::error::QuotaError;
use doppel_model::{Limits, TenantId, TwinKey};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
struct Counts {
    /// Live twins per tenant, named shadows included.
    twins: HashMap<TenantId, usize>,
    /// Live named shadows per device (tenant and thing name); devices without any are absent.
    shadows: HashMap<(TenantId, String), usize>,
}

pub(crate) struct Census {
    /// Most live twins per tenant; 0 for no limit.
    max_twins_per_tenant: usize,
    /// Most live named shadows per device; 0 for no limit.
    max_named_shadows: usize,
    counts: Mutex<Counts>,
}

/// The counts of the twins loaded at start, taken while they are filed into the shards' maps
/// (each record is at hand then; a pass over the maps afterwards touched every record again).
#[derive(Default)]
pub(crate) struct Tally(Counts);

impl Tally {
    /// Counts the live twin `key`.
    pub(crate) fn count(&mut self, key: &TwinKey) {
        let counts = &mut self.0;
        // Looked up before inserting: a fleet has few tenants, and cloning the tenant for every
        // twin was most of counting a million of them.
        match counts.twins.get_mut(&key.tenant) {
            Some(count) => *count += 1,
            None => {
                counts.twins.insert(key.tenant.clone(), 1);
            }
        }
        if let Some(device) = shadow_owner(key) {
            *counts.shadows.entry(device).or_default() += 1;
        }
    }
}

impl Census {
    /// The census of the twins `tally` counted.
    pub(crate) fn new(limits: &Limits, tally: Tally) -> Census {
        Census {
            max_twins_per_tenant: limits.max_twins_per_tenant,
            max_named_shadows: limits.max_named_shadows,
            counts: Mutex::new(tally.0),
        }
    }

    /// Takes a place for the new twin `key`, or refuses it when its tenant or its device is at
    /// its limit (counting nothing then).
    pub(crate) fn admit(&self, key: &TwinKey) -> Result<(), QuotaError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let twins = counts.twins.get(&key.tenant).copied().unwrap_or(0);
        if self.max_twins_per_tenant > 0 && twins >= self.max_twins_per_tenant {
            return Err(QuotaError::TooManyTwins {
                tenant: key.tenant.clone(),
                limit: self.max_twins_per_tenant,
            });
        }
        let device = shadow_owner(key);
        if let Some(device) = &device {
            let shadows = counts.shadows.get(device).copied().unwrap_or(0);
            if self.max_named_shadows > 0 && shadows >= self.max_named_shadows {
                return Err(QuotaError::TooManyNamedShadows {
                    thing: device.1.clone(),
                    limit: self.max_named_shadows,
                });
            }
        }
        *counts.twins.entry(key.tenant.clone()).or_default() += 1;
        if let Some(device) = device {
            *counts.shadows.entry(device).or_default() += 1;
        }
        Ok(())
    }

    /// Gives back the place of `key`: it was deleted, or its creation was not committed.
    pub(crate) fn release(&self, key: &TwinKey) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut counts.twins, &key.tenant);
        if let Some(device) = shadow_owner(key) {
            decrement(&mut counts.shadows, &device);
        }
    }

    /// Live twins of every tenant.
    pub(crate) fn live_twins(&self) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.twins.values().sum()
    }

    /// Live twins of `tenant`, as counted.
    #[cfg(test)]
    pub(crate) fn twins(&self, tenant: &TenantId) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.twins.get(tenant).copied().unwrap_or(0)
    }

    /// Every tenant with a live twin, with how many it has, in tenant order.
    pub(crate) fn tenants(&self) -> Vec<(TenantId, usize)> {
        let mut tenants: Vec<(TenantId, usize)> = {
            let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            counts
                .twins
                .iter()
                .map(|(tenant, twins)| (tenant.clone(), *twins))
                .collect()
        };
        // After the lock: every shard takes it to admit a new twin.
        tenants.sort_unstable();
        tenants
    }
}

/// The device (tenant and thing) whose named shadow `key` is, if it is one.
fn shadow_owner(key: &TwinKey) -> Option<(TenantId, String)> {
    key.device
        .shadow_name()
        .map(|_| (key.tenant.clone(), key.device.thing().to_owned()))
}

/// Counts one fewer under `key`, forgetting it at zero so that the maps hold only tenants and
/// devices that have something.
fn decrement<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_model::DeviceId;

    fn key(tenant: &str, device: &str) -> TwinKey {
        TwinKey::new(
            TenantId::new(tenant).unwrap(),
            DeviceId::new(device).unwrap(),
        )
    }

    fn census(max_named_shadows: usize, max_twins_per_tenant: usize, live: &[TwinKey]) -> Census {
        let limits = Limits {
            max_named_shadows,
            max_twins_per_tenant,
            ..Limits::default()
        };
        let mut tally = Tally::default();
        for key in live {
            tally.count(key);
        }
        Census::new(&limits, tally)
    }

    #[test]
    fn a_device_gets_as_many_named_shadows_as_the_limit_and_a_released_place_is_free_again() {
        let census = census(2, 0, &[key("t", "pump/shadows/a")]);
        assert_eq!(census.admit(&key("t", "pump/shadows/b")), Ok(()));
        assert_eq!(
            census.admit(&key("t", "pump/shadows/c")),
            Err(QuotaError::TooManyNamedShadows {
                thing: "pump".into(),
                limit: 2
            })
        );
        // Other devices, the device's own twin and other tenants have places of their own.
        assert_eq!(census.admit(&key("t", "fan/shadows/c")), Ok(()));
        assert_eq!(census.admit(&key("t", "pump")), Ok(()));
        assert_eq!(census.admit(&key("u", "pump/shadows/c")), Ok(()));
        census.release(&key("t", "pump/shadows/a"));
        assert_eq!(census.admit(&key("t", "pump/shadows/c")), Ok(()));
    }

    #[test]
    fn a_tenant_gets_as_many_twins_as_the_limit_counting_those_loaded_at_start() {
        let census = census(0, 3, &[key("t", "a"), key("t", "b/shadows/x")]);
        assert_eq!(census.twins(&TenantId::new("t").unwrap()), 2);
        assert_eq!(census.admit(&key("t", "c")), Ok(()));
        assert_eq!(
            census.admit(&key("t", "d")),
            Err(QuotaError::TooManyTwins {
                tenant: TenantId::new("t").unwrap(),
                limit: 3
            })
        );
        assert_eq!(census.admit(&key("u", "d")), Ok(()));
        census.release(&key("t", "a"));
        assert_eq!(census.admit(&key("t", "d")), Ok(()));
        assert_eq!(
            census.tenants(),
            [
                (TenantId::new("t").expect("a valid tenant id"), 3),
                (TenantId::new("u").expect("a valid tenant id"), 1)
            ]
        );
        // A refusal counts nothing.
        assert!(census.admit(&key("t", "e")).is_err());
        assert_eq!(census.twins(&TenantId::new("t").unwrap()), 3);
    }

    #[test]
    fn zero_means_no_limit() {
        let census = census(0, 0, &[]);
        for i in 0..100 {
            assert_eq!(
                census.admit(&key("t", &format!("pump/shadows/s{i}"))),
                Ok(())
            );
        }
    }
}

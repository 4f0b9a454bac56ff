//! Fleet queries over the twins in memory: how a twin answers a query's paths, and the indexes
//! that find candidates without reading every twin.
//!
//! Each shard keeps a [`FleetIndex`] of its own twins, updated with its twin map after every
//! commit and before any caller is answered, so a query that starts after a write was
//! acknowledged finds the twin by its new values. An index maps `(tenant, path, value)` to the
//! devices that have that value: every tag, the connection status, the device type, the
//! firmware version, and the `reported`/`desired` paths the configuration names. Only scalar
//! values are indexed (a query compares paths with scalars only).

use doppel_model::{ConnectionStatus, DeviceId, TenantId, Twin, TwinKey};
use doppel_query::{Fields, Path};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A twin as a query sees it.
pub(crate) struct TwinFields<'a>(pub &'a Twin);

impl Fields for TwinFields<'_> {
    fn value(&self, path: &Path) -> Option<Cow<'_, Value>> {
        let twin = self.0;
        match path {
            Path::Reported(segments) => walk(&twin.reported.state, segments).map(Cow::Borrowed),
            Path::Desired(segments) => walk(&twin.desired.state, segments).map(Cow::Borrowed),
            Path::Tag(name) => twin
                .meta
                .tags
                .get(name)
                .map(|tag| Cow::Owned(Value::String(tag.clone()))),
            Path::ConnectionStatus => Some(Cow::Owned(Value::String(
                status_name(twin.connection.status).into(),
            ))),
            Path::ConnectionStale => Some(Cow::Owned(Value::Bool(twin.connection.stale))),
            Path::DeviceType => twin
                .meta
                .device_type
                .as_ref()
                .map(|kind| Cow::Owned(Value::String(kind.clone()))),
            Path::FirmwareVersion => twin
                .meta
                .firmware_version
                .as_ref()
                .map(|version| Cow::Owned(Value::String(version.clone()))),
        }
    }

    fn delta_is_empty(&self) -> bool {
        !self.0.has_delta()
    }
}

fn walk<'a>(state: &'a Map<String, Value>, segments: &[String]) -> Option<&'a Value> {
    let (first, rest) = segments.split_first()?;
    let mut value = state.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

pub(crate) fn status_name(status: ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Connected => "CONNECTED",
        ConnectionStatus::Disconnected => "DISCONNECTED",
        ConnectionStatus::Unknown => "UNKNOWN",
    }
}

/// A scalar as an index key, equal exactly when [`doppel_query::values_equal`] says the values
/// are: numbers by value (`1` and `1.0` share a key), everything else by its JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ValueKey {
    Null,
    Bool(bool),
    /// A number with an exact integer value.
    Integer(i128),
    /// Any other number, by its bits (NaN cannot occur in JSON).
    Float(u64),
    Text(Arc<str>),
}

impl ValueKey {
    /// The key of a scalar; `None` for objects and arrays, which are never indexed.
    pub(crate) fn of(value: &Value) -> Option<ValueKey> {
        Some(match value {
            Value::Null => ValueKey::Null,
            Value::Bool(flag) => ValueKey::Bool(*flag),
            Value::String(text) => ValueKey::Text(Arc::from(text.as_str())),
            Value::Number(number) => {
                if let Some(integer) = number.as_i64() {
                    ValueKey::Integer(i128::from(integer))
                } else if let Some(integer) = number.as_u64() {
                    ValueKey::Integer(i128::from(integer))
                } else {
                    let float = number.as_f64()?;
                    // An integral float names the same number as the integer (`1.0 = 1`).
                    if float.fract() == 0.0 && float.abs() < 1e18 {
                        ValueKey::Integer(float as i128)
                    } else {
                        ValueKey::Float(float.to_bits())
                    }
                }
            }
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

/// Which paths are indexed: the fixed ones, and the configured state paths.
#[derive(Clone, Debug, Default)]
pub struct IndexedPaths {
    /// `reported.*` and `desired.*` paths named by the configuration.
    pub state: Vec<Path>,
}

impl IndexedPaths {
    /// Whether an equality on `path` can be answered from the index.
    pub(crate) fn covers(&self, path: &Path) -> bool {
        match path {
            Path::Tag(_) | Path::ConnectionStatus | Path::DeviceType | Path::FirmwareVersion => {
                true
            }
            // Nearly every twin has the same value, so an index would narrow nothing for
            // `false`; `true` is found through `connection.status = 'UNKNOWN'`, which is.
            Path::ConnectionStale => false,
            Path::Reported(_) | Path::Desired(_) => self.state.contains(path),
        }
    }

    /// The indexed paths of one twin, with their values, in a slice of exactly their number:
    /// the index holds one per twin, and a vector grown by pushes would hold room for more.
    fn entries(&self, twin: &Twin) -> Box<[(Path, ValueKey)]> {
        let fields = TwinFields(twin);
        let fixed = [
            Path::ConnectionStatus,
            Path::DeviceType,
            Path::FirmwareVersion,
        ];
        let mut entries = Vec::with_capacity(twin.meta.tags.len() + fixed.len() + self.state.len());
        entries.extend(twin.meta.tags.iter().map(|(name, value)| {
            (
                Path::Tag(name.clone()),
                ValueKey::Text(Arc::from(value.as_str())),
            )
        }));
        for path in fixed.iter().chain(&self.state) {
            if let Some(key) = fields.value(path).and_then(|value| ValueKey::of(&value)) {
                entries.push((path.clone(), key));
            }
        }
        entries.into_boxed_slice()
    }
}

/// A step of a walk through index entries: devices in id order, complete up to `frontier`.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub devices: Vec<DeviceId>,
    /// The last device of a source that may have more beyond it; `None` when every source was
    /// read to its end.
    pub frontier: Option<DeviceId>,
}

impl Walked {
    /// Adds one source's devices (at most `chunk` of them, in order).
    pub(crate) fn merge(&mut self, devices: Vec<DeviceId>, chunk: usize) {
        let frontier = (devices.len() >= chunk)
            .then(|| devices.last().cloned())
            .flatten();
        self.absorb(Walked { devices, frontier });
    }

    /// Adds another walk's devices; the nearer frontier holds for both.
    pub(crate) fn absorb(&mut self, other: Walked) {
        self.devices.extend(other.devices);
        if let Some(frontier) = other.frontier
            && self
                .frontier
                .as_ref()
                .is_none_or(|nearer| &frontier < nearer)
        {
            self.frontier = Some(frontier);
        }
    }

    /// The devices in order, without repeats, up to the frontier.
    pub(crate) fn settle(mut self) -> Walked {
        self.devices.sort();
        self.devices.dedup();
        if let Some(frontier) = &self.frontier {
            self.devices.retain(|device| device <= frontier);
        }
        self
    }
}

/// What one live twin is indexed under.
#[derive(Debug, PartialEq)]
struct Indexed {
    entries: Box<[(Path, ValueKey)]>,
    /// Whether its delta is not empty, for the gauge of twins with a delta.
    delta: bool,
}

impl Indexed {
    fn status(&self) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|(path, value)| match (path, value) {
                (Path::ConnectionStatus, ValueKey::Text(status)) => Some(&**status),
                _ => None,
            })
    }
}

/// The fleet gauges, moved by each shard as its twins change. A process runs one engine, so
/// shards of one fleet share them.
mod gauges {
    use super::Indexed;
    use crate::metric::{self, DEVICE_STATUSES};
    use doppel_model::TwinKey;

    pub(super) fn moved(key: &TwinKey, old: Option<&Indexed>, new: Option<&Indexed>) {
        let count = |indexed: Option<&Indexed>| f64::from(u8::from(indexed.is_some()));
        let delta =
            |indexed: Option<&Indexed>| f64::from(u8::from(indexed.is_some_and(|i| i.delta)));
        let (twins, deltas) = (count(new) - count(old), delta(new) - delta(old));
        if twins != 0.0 {
            metrics::gauge!(metric::TWINS).increment(twins);
        }
        if deltas != 0.0 {
            metrics::gauge!(metric::TWINS_WITH_DELTA).increment(deltas);
        }
        // A device is its thing: its named shadows carry no presence of their own, so counting
        // them would add an `unknown` device per shadow.
        if key.device.shadow_name().is_some() {
            return;
        }
        let (before, after) = (old.and_then(Indexed::status), new.and_then(Indexed::status));
        if before != after {
            if let Some(status) = before {
                metrics::gauge!(metric::DEVICES, "status" => label(status)).decrement(1.0);
            }
            if let Some(status) = after {
                metrics::gauge!(metric::DEVICES, "status" => label(status)).increment(1.0);
            }
        }
    }

    fn label(status: &str) -> &'static str {
        let [connected, disconnected, unknown] = DEVICE_STATUSES;
        match status {
            "CONNECTED" => connected,
            "DISCONNECTED" => disconnected,
            _ => unknown,
        }
    }
}

/// One shard's indexes.
#[derive(Default)]
pub(crate) struct FleetIndex {
    paths: IndexedPaths,
    /// The devices with each value of each indexed path, in device-id order. Nested rather
    /// than keyed by a tuple, so that looking up an existing entry clones nothing.
    devices: HashMap<TenantId, HashMap<Path, HashMap<ValueKey, BTreeSet<DeviceId>>>>,
    /// What each live twin is indexed under, so that a change can be undone without the old
    /// twin.
    entries: HashMap<TwinKey, Indexed>,
    /// Whether every twin loaded at start is indexed; until then queries read every twin.
    ready: bool,
}

impl FleetIndex {
    pub(crate) fn new(paths: IndexedPaths) -> FleetIndex {
        FleetIndex {
            paths,
            ..FleetIndex::default()
        }
    }

    pub(crate) fn mark_ready(&mut self) {
        self.ready = true;
    }

    /// Indexes `twin` under `key` in place of whatever it was indexed under; `None` (a deleted
    /// twin) removes it. Keeps the fleet gauges (twins, devices by connection status, twins with
    /// a delta) in step.
    pub(crate) fn update(&mut self, key: &TwinKey, twin: Option<&Twin>) {
        let new = twin.and_then(Twin::live).map(|twin| Indexed {
            entries: self.paths.entries(twin),
            delta: twin.has_delta(),
        });
        let old = self.entries.remove(key);
        if old == new {
            if let Some(new) = new {
                self.entries.insert(key.clone(), new);
            }
            return;
        }
        gauges::moved(key, old.as_ref(), new.as_ref());
        for (path, value) in old.map(|old| old.entries).unwrap_or_default() {
            self.remove_device(key, &path, &value);
        }
        if let Some(mut new) = new {
            if !self.devices.contains_key(&key.tenant) {
                self.devices.insert(key.tenant.clone(), HashMap::new());
            }
            let Some(paths) = self.devices.get_mut(&key.tenant) else {
                return;
            };
            for (path, value) in &mut new.entries {
                if !paths.contains_key(path) {
                    paths.insert(path.clone(), HashMap::new());
                }
                let Some(values) = paths.get_mut(path) else {
                    continue;
                };
                match values.get_key_value(value) {
                    // Share the entry's text with every twin that has the same value.
                    Some((existing, _)) => *value = existing.clone(),
                    None => {
                        values.insert(value.clone(), BTreeSet::new());
                    }
                }
                if let Some(devices) = values.get_mut(value) {
                    devices.insert(key.device.clone());
                }
            }
            self.entries.insert(key.clone(), new);
        }
    }

    fn remove_device(&mut self, key: &TwinKey, path: &Path, value: &ValueKey) {
        let Some(paths) = self.devices.get_mut(&key.tenant) else {
            return;
        };
        let Some(values) = paths.get_mut(path) else {
            return;
        };
        if let Some(devices) = values.get_mut(value) {
            devices.remove(&key.device);
            if devices.is_empty() {
                values.remove(value);
            }
        }
        if values.is_empty() {
            paths.remove(path);
        }
        if paths.is_empty() {
            self.devices.remove(&key.tenant);
        }
    }

    /// The devices with `value` at `path` in `tenant`.
    fn set(&self, tenant: &TenantId, path: &Path, value: &ValueKey) -> Option<&BTreeSet<DeviceId>> {
        self.devices.get(tenant)?.get(path)?.get(value)
    }

    /// The devices of `tenant` whose `path` equals one of `values`, or `None` when `path` is
    /// not indexed (or the index is not complete yet).
    pub(crate) fn lookup(
        &self,
        tenant: &TenantId,
        path: &Path,
        values: &[Value],
    ) -> Option<BTreeSet<DeviceId>> {
        if !self.ready || !self.paths.covers(path) {
            return None;
        }
        let mut found = BTreeSet::new();
        for value in values {
            let Some(key) = ValueKey::of(value) else {
                continue;
            };
            if let Some(devices) = self.set(tenant, path, &key) {
                found.extend(devices.iter().cloned());
            }
        }
        Some(found)
    }

    /// Up to `chunk` devices of `tenant` after `after`, in device-id order, whose `path` equals
    /// one of `values`, and the frontier: every such device up to it is in the answer, and
    /// `None` says there are none beyond. `None` overall when `path` is not indexed (or the
    /// index is not complete yet). Lets a query walk an index entry a page at a time instead
    /// of copying all of it.
    pub(crate) fn devices_after(
        &self,
        tenant: &TenantId,
        path: &Path,
        values: &[Value],
        after: Option<&DeviceId>,
        chunk: usize,
    ) -> Option<Walked> {
        if !self.ready || !self.paths.covers(path) {
            return None;
        }
        let mut walked = Walked::default();
        for key in values.iter().filter_map(ValueKey::of) {
            let Some(devices) = self.set(tenant, path, &key) else {
                continue;
            };
            let range = match after {
                Some(after) => devices.range::<DeviceId, _>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                )),
                None => devices.range::<DeviceId, _>(..),
            };
            let taken: Vec<DeviceId> = range.take(chunk).cloned().collect();
            walked.merge(taken, chunk);
        }
        Some(walked)
    }

    /// How many devices of `tenant` have one of `values` at `path` (to pick the narrowest
    /// constraint), or `None` when `path` is not indexed.
    pub(crate) fn count(&self, tenant: &TenantId, path: &Path, values: &[Value]) -> Option<usize> {
        if !self.ready || !self.paths.covers(path) {
            return None;
        }
        // `IN (1, 1.0)` names one value: count its devices once.
        let keys: std::collections::HashSet<ValueKey> =
            values.iter().filter_map(ValueKey::of).collect();
        Some(
            keys.iter()
                .filter_map(|key| self.set(tenant, path, key))
                .map(BTreeSet::len)
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests;

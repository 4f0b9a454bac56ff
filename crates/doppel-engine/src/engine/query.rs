//! Fleet queries: the twins of a tenant that match a query, a page at a time, and counts.
//!
//! Consistent with writes: twins are read from the shards' maps, which hold every acknowledged
//! change (a change is published there before its writer is answered). When the query has an
//! equality on an indexed path, candidates come from the narrowest such index entry; otherwise
//! every twin of the tenant is a candidate. Either way each candidate is evaluated whole.

use super::{Engine, Shard};
use crate::error::EngineError;
use crate::index::{TwinFields, Walked};
use doppel_model::codec::EncodedTwin;
use doppel_model::{DeviceId, TenantId, Twin, TwinKey};
use doppel_query::{CompareOp, Direction, Expr, Fields, Order, Path, Query};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::PoisonError;

/// One page of a query's answer.
#[derive(Debug)]
pub struct QueryPage {
    pub twins: Vec<(DeviceId, Twin)>,
    /// Where the next page starts, when this one is full.
    pub next_cursor: Option<String>,
}

/// How a query found its candidates, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// From the index of this path.
    Index(Path),
    /// Every twin of the tenant.
    Scan,
}

impl Engine {
    /// The twins of `tenant` that match `query`, in device-id order or by `order`, `limit` at a
    /// time, after `cursor` (a `next_cursor` of an earlier page of the same query and order).
    pub async fn query(
        &self,
        tenant: &TenantId,
        query: Query,
        order: Option<Order>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<(QueryPage, Plan), EngineError> {
        let engine = self.clone();
        let tenant = tenant.clone();
        self.blocking(move || {
            let after = cursor.as_deref().map(parse_cursor).transpose()?;
            if order.is_none()
                && let Some((path, values)) = engine.narrowest(&tenant, &query)
            {
                let after = after.map(|(_, device)| device);
                let page = engine.walk_index(&tenant, &query, &path, &values, after, limit);
                return Ok((page, Plan::Index(path)));
            }
            let (candidates, plan) = engine.candidates(&tenant, &query);
            let mut found = Vec::new();
            match &order {
                None => {
                    for (device, twin) in engine.matching(candidates, &query) {
                        if after
                            .as_ref()
                            .is_some_and(|(_, last)| device.as_str() <= last.as_str())
                        {
                            continue;
                        }
                        found.push((Value::Null, device, twin));
                        if found.len() > limit {
                            break;
                        }
                    }
                }
                Some(order) => {
                    for (device, twin) in engine.matching(candidates, &query) {
                        let sort = TwinFields(&twin)
                            .value(&order.path)
                            .map_or(Value::Null, |value| value.into_owned());
                        found.push((sort, device, twin));
                    }
                    found.sort_by(|a, b| by_order(order, (&a.0, &a.1), (&b.0, &b.1)));
                    if let Some(after) = &after {
                        found.retain(|entry| {
                            by_order(order, (&entry.0, &entry.1), (&after.0, &after.1))
                                == Ordering::Greater
                        });
                    }
                }
            }
            Ok((page(found, limit), plan))
        })
        .await
    }

    /// Whether the twin of `key` matches `query` now (a deleted or missing twin does not).
    pub fn twin_matches(&self, key: &TwinKey, query: &Query) -> bool {
        let Some(record) = self.read_record(key) else {
            return false;
        };
        EncodedTwin::is_live(&record.0)
            && EncodedTwin::decode(&record.0).is_ok_and(|twin| query.matches(&TwinFields(&twin)))
    }

    /// How many twins of `tenant` match `query`, in all and per value of `group_by` (a missing
    /// field counts under `null`).
    pub async fn count(
        &self,
        tenant: &TenantId,
        query: Query,
        group_by: Option<Path>,
    ) -> Result<(u64, Vec<(Value, u64)>), EngineError> {
        let engine = self.clone();
        let tenant = tenant.clone();
        self.blocking(move || {
            if group_by.is_none()
                && let Some(total) = engine.count_from_index(&tenant, &query)
            {
                return Ok((total, Vec::new()));
            }
            let (candidates, _) = engine.candidates(&tenant, &query);
            let mut total = 0;
            let mut groups: BTreeMap<String, (Value, u64)> = BTreeMap::new();
            for (_, twin) in engine.matching(candidates, &query) {
                total += 1;
                if let Some(path) = &group_by {
                    let value = TwinFields(&twin)
                        .value(path)
                        .map_or(Value::Null, |value| value.into_owned());
                    groups.entry(value.to_string()).or_insert((value, 0)).1 += 1;
                }
            }
            Ok((total, groups.into_values().collect()))
        })
        .await
    }

    /// The count of a query that is one indexed equality (`path = v` or `path IN (...)`), read
    /// from the index entries' sizes without reading a twin; `None` for any other query.
    fn count_from_index(&self, tenant: &TenantId, query: &Query) -> Option<u64> {
        let (path, values) = match query.expr() {
            Expr::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } => (path, std::slice::from_ref(value)),
            Expr::In {
                path,
                values,
                negated: false,
            } => (path, values.as_slice()),
            _ => return None,
        };
        let mut total = 0;
        for shard in self.shards.iter() {
            let index = shard.index.read().unwrap_or_else(PoisonError::into_inner);
            total += index.count(tenant, path, values)?;
        }
        u64::try_from(total).ok()
    }

    /// The indexed equality of `query` with the fewest candidates, if any is indexed.
    fn narrowest(&self, tenant: &TenantId, query: &Query) -> Option<(Path, Vec<Value>)> {
        query
            .required()
            .into_iter()
            .filter_map(|(path, values)| {
                let mut total = 0;
                for shard in self.shards.iter() {
                    let index = shard.index.read().unwrap_or_else(PoisonError::into_inner);
                    total += index.count(tenant, &path, &values)?;
                }
                Some((total, path, values))
            })
            .min_by_key(|(total, _, _)| *total)
            .map(|(_, path, values)| (path, values))
    }

    /// A page in device-id order from an index entry, read a chunk at a time from every shard,
    /// so a page costs about what it holds rather than what the entry holds.
    fn walk_index(
        &self,
        tenant: &TenantId,
        query: &Query,
        path: &Path,
        values: &[Value],
        mut after: Option<DeviceId>,
        limit: usize,
    ) -> QueryPage {
        // One more than a page tells whether there is a next page.
        let chunk = (limit + 1).max(64);
        let mut found: Vec<(Value, DeviceId, Twin)> = Vec::new();
        loop {
            let mut walked = Walked::default();
            for shard in self.shards.iter() {
                let index = shard.index.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(part) = index.devices_after(tenant, path, values, after.as_ref(), chunk)
                {
                    walked.absorb(part);
                }
            }
            let walked = walked.settle();
            let keys = walked
                .devices
                .into_iter()
                .map(|device| TwinKey::new(tenant.clone(), device));
            for (device, twin) in self.matching(keys.collect(), query) {
                found.push((Value::Null, device, twin));
                if found.len() > limit {
                    break;
                }
            }
            match walked.frontier {
                Some(frontier) if found.len() <= limit => after = Some(frontier),
                _ => break,
            }
        }
        page(found, limit)
    }

    /// The candidates of a query, in device-id order: from the narrowest usable index entry,
    /// or every twin of the tenant.
    fn candidates(&self, tenant: &TenantId, query: &Query) -> (Vec<TwinKey>, Plan) {
        if let Some((path, values)) = self.narrowest(tenant, query) {
            let mut keys: Vec<TwinKey> = self
                .shards
                .iter()
                .flat_map(|shard| {
                    let index = shard.index.read().unwrap_or_else(PoisonError::into_inner);
                    index.lookup(tenant, &path, &values).unwrap_or_default()
                })
                .map(|device| TwinKey::new(tenant.clone(), device))
                .collect();
            keys.sort_by(|a, b| a.device.cmp(&b.device));
            return (keys, Plan::Index(path));
        }
        let mut keys: Vec<TwinKey> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .twins
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys()
                    .filter(|key| &key.tenant == tenant)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_by(|a, b| a.device.cmp(&b.device));
        (keys, Plan::Scan)
    }

    /// The live candidates that match, in the candidates' order, each decoded outside the
    /// shard's lock.
    fn matching<'a>(
        &'a self,
        candidates: Vec<TwinKey>,
        query: &'a Query,
    ) -> impl Iterator<Item = (DeviceId, Twin)> + 'a {
        candidates.into_iter().filter_map(move |key| {
            let record = self.read_record(&key)?;
            if !EncodedTwin::is_live(&record.0) {
                return None;
            }
            match EncodedTwin::decode(&record.0) {
                Ok(twin) => query
                    .matches(&TwinFields(&twin))
                    .then_some((key.device, twin)),
                Err(err) => {
                    tracing::error!(error = %err, twin = %key, "a stored twin cannot be decoded; queries skip it");
                    None
                }
            }
        })
    }

    fn read_record(&self, key: &TwinKey) -> Option<EncodedTwin> {
        let shard: &Shard = self.shard(key);
        shard
            .twins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}

/// The first `limit` of `found` (sort value, device, twin), with the cursor of the next page
/// when `found` holds more.
fn page(mut found: Vec<(Value, DeviceId, Twin)>, limit: usize) -> QueryPage {
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = more
        .then(|| {
            found
                .last()
                .map(|(sort, device, _)| make_cursor(sort, device))
        })
        .flatten();
    let twins = found
        .into_iter()
        .map(|(_, device, twin)| (device, twin))
        .collect();
    QueryPage { twins, next_cursor }
}

fn by_order(order: &Order, a: (&Value, &DeviceId), b: (&Value, &DeviceId)) -> Ordering {
    let values = compare_values(a.0, b.0);
    let values = match order.direction {
        Direction::Ascending => values,
        Direction::Descending => values.reverse(),
    };
    values.then_with(|| a.1.cmp(b.1))
}

/// A total order over JSON values for sorting: missing (null) first, then booleans, numbers,
/// strings, and anything else by its JSON text.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) | Value::Object(_) => 4,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// A cursor names the last twin of a page: its sort value and device id, as JSON.
fn make_cursor(sort: &Value, device: &DeviceId) -> String {
    Value::Array(vec![sort.clone(), Value::String(device.to_string())]).to_string()
}

fn parse_cursor(text: &str) -> Result<(Value, DeviceId), EngineError> {
    let invalid = || {
        EngineError::Model(doppel_model::ModelError::InvalidField {
            field: "cursor",
            reason: "is not a cursor this API returned".into(),
        })
    };
    let value: Value = serde_json::from_str(text).map_err(|_| invalid())?;
    match value {
        Value::Array(mut parts) if parts.len() == 2 => {
            let device = parts.pop().and_then(|device| match device {
                Value::String(device) => DeviceId::new(device).ok(),
                _ => None,
            });
            let sort = parts.pop().unwrap_or(Value::Null);
            device.map(|device| (sort, device)).ok_or_else(invalid)
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests;

//! The one way to change a twin. [`apply`] takes any change, a device's report as much as
//! another replica's change, and applies it by the rules that hold for it: a merge by the
//! replication rules, a write of this replica's own by the update rules, stamped when the twin
//! is replicated. Callers cannot pick the wrong path, because there is no other.

use crate::error::ModelError;
use crate::limits::Limits;
use crate::policy::ReplicaConfig;
use crate::replica;
use crate::time::Millis;
use crate::twin::Twin;
use crate::update::{Applied, Change, UpdateRequest};

/// What a change is applied with besides the twin and the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The instant of the change: the model has no clock, the engine passes its own.
    pub now: Millis,
    /// How large and deep a twin's state may grow.
    pub limits: &'a Limits,
    /// The replica applying the change and its rules: which twins it stamps and how it merges
    /// another replica's change. [`ReplicaConfig::hub`] for a hub nobody syncs with.
    pub replica: &'a ReplicaConfig,
}

/// Applies `request` to the twin `current` (a tombstone, or `None` when it does not exist).
/// Returns an error, and changes nothing, when the request is invalid or its precondition fails.
pub fn apply(
    current: Option<Twin>,
    request: &UpdateRequest,
    context: &Context<'_>,
) -> Result<Applied, ModelError> {
    let Context {
        now,
        limits,
        replica,
    } = *context;
    match &request.change {
        Change::Merge(delta) => replica::merge(current, delta, request, now, limits, replica),
        _ => replica::apply_local(current, request, now, limits, replica),
    }
}

//! The engine's metrics: each name once, with the description `GET /metrics` shows as its
//! `# HELP`. [`describe`] also makes every series with a known set of labels exist from the
//! start at zero, so that an alert on a gauge or a rate has data before the first change.

/// Live twins, named shadows included.
pub(crate) const TWINS: &str = "doppel_twins";
/// Live twins whose desired state differs from the reported one.
pub(crate) const TWINS_WITH_DELTA: &str = "doppel_twins_with_delta";
/// Devices (not their named shadows) by connection status.
pub(crate) const DEVICES: &str = "doppel_devices";
/// The `status` labels of [`DEVICES`].
pub(crate) const DEVICE_STATUSES: [&str; 3] = ["connected", "disconnected", "unknown"];
pub(crate) const COMMIT_DURATION: &str = "doppel_store_commit_duration_seconds";
/// Public for the recorder, which gives this histogram buckets of its own.
pub const COMMIT_WRITES: &str = "doppel_store_commit_writes";
pub(crate) const COMMIT_FAILURES: &str = "doppel_store_commit_failures_total";
pub(crate) const TWIN_UPDATES: &str = "doppel_twin_updates_total";
/// The `kind` labels of [`TWIN_UPDATES`], one per history kind.
pub(crate) const TWIN_UPDATE_KINDS: [&str; 6] = [
    "reported",
    "desired",
    "state",
    "meta",
    "connection",
    "deleted",
];
pub(crate) const COMMANDS: &str = "doppel_commands_total";
/// The `event` labels of [`COMMANDS`]: the names of the command events that are durable
/// changes (`CommandEventKind::CHANGES`; a unit test holds the two lists together).
pub(crate) const COMMAND_EVENTS: [&str; 7] = [
    "queued",
    "delivered",
    "acknowledged",
    "expired",
    "canceled",
    "failed",
    "acknowledged_late",
];
/// The gauge of open (PENDING or DELIVERED) commands, which every command worker adjusts by
/// its share.
pub(crate) const COMMANDS_OPEN: &str = "doppel_commands_open";

/// Describes the engine's metrics and creates its series at zero. Call once the process's
/// recorder is installed; calling it again changes nothing.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(TWINS, "Live twins, named shadows included.");
    describe_gauge!(
        TWINS_WITH_DELTA,
        "Live twins whose desired state differs from the reported state."
    );
    describe_gauge!(
        DEVICES,
        "Devices (named shadows not counted) by connection status."
    );
    describe_histogram!(
        COMMIT_DURATION,
        "Duration of one group commit of twin and command writes (the store batch and its fsync)."
    );
    describe_histogram!(COMMIT_WRITES, "Twin and command writes per group commit.");
    describe_counter!(
        COMMIT_FAILURES,
        "Group commits that failed; none of their writes was acknowledged."
    );
    describe_counter!(TWIN_UPDATES, "Durable twin changes by history kind.");
    describe_counter!(COMMANDS, "Durable command changes by event.");
    describe_gauge!(COMMANDS_OPEN, "Commands PENDING or DELIVERED.");

    metrics::gauge!(TWINS).increment(0.0);
    metrics::gauge!(TWINS_WITH_DELTA).increment(0.0);
    for status in DEVICE_STATUSES {
        metrics::gauge!(DEVICES, "status" => status).increment(0.0);
    }
    // Registering a histogram is what makes it exist: it renders with zero counts until its
    // first sample.
    let _ = metrics::histogram!(COMMIT_DURATION);
    let _ = metrics::histogram!(COMMIT_WRITES);
    metrics::counter!(COMMIT_FAILURES).increment(0);
    for kind in TWIN_UPDATE_KINDS {
        metrics::counter!(TWIN_UPDATES, "kind" => kind).increment(0);
    }
    for event in COMMAND_EVENTS {
        metrics::counter!(COMMANDS, "event" => event).increment(0);
    }
    metrics::gauge!(COMMANDS_OPEN).increment(0.0);
}

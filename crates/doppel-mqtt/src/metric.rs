//! The broker's and shadow service's metrics: each name once, with the description
//! `GET /metrics` shows as its `# HELP`. [`describe_metrics`] also makes every series with a
//! known set of labels exist from the start at zero, so that alerts have data before the first
//! event.

use doppel_auth::Refusal;
use doppel_wire::Verdict;
use doppel_wire::shadow::ShadowOp;

/// Live client sessions, raised and lowered by the connect and disconnect hooks.
pub(crate) const CONNECTIONS: &str = "doppel_mqtt_connections";
/// Refused logins by `reason`: a [`Refusal`], or one of [`OTHER_LOGIN_FAILURES`].
pub(crate) const LOGIN_FAILURES: &str = "doppel_mqtt_login_failures_total";
pub(crate) const MISSING_PASSWORD: &str = "missing_password";
pub(crate) const INVALID_TOKEN: &str = "invalid_token";
pub(crate) const TOKEN_NOT_ALLOWED: &str = "token_not_allowed";
/// The login failure reasons that are not a password check's [`Refusal`].
const OTHER_LOGIN_FAILURES: [&str; 3] = [MISSING_PASSWORD, INVALID_TOKEN, TOKEN_NOT_ALLOWED];
pub(crate) const MESSAGES_RECEIVED: &str = "doppel_mqtt_messages_received_total";
pub(crate) const MESSAGES_PUBLISHED: &str = "doppel_mqtt_messages_published_total";
pub(crate) const MESSAGES_DROPPED: &str = "doppel_mqtt_messages_dropped_total";
/// The one `reason` of [`MESSAGES_DROPPED`] so far.
pub(crate) const QUEUE_FULL: &str = "queue_full";
pub(crate) const SLOW_CLIENTS_DISCONNECTED: &str = "doppel_mqtt_slow_clients_disconnected_total";
pub(crate) const SHADOW_REQUESTS: &str = "doppel_shadow_requests_total";
pub(crate) const SHADOW_REQUEST_DURATION: &str = "doppel_shadow_request_duration_seconds";
/// The `outcome` labels of the shadow request metrics.
pub(crate) const ACCEPTED: &str = Verdict::Accepted.as_str();
pub(crate) const REJECTED: &str = Verdict::Rejected.as_str();
pub(crate) const SYNC_LATENCY: &str = "doppel_sync_latency_seconds";

/// Describes the MQTT metrics and creates their series at zero. Call once the process's
/// recorder is installed; calling it again changes nothing.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Live MQTT client sessions.");
    describe_counter!(LOGIN_FAILURES, "Refused MQTT logins by reason.");
    describe_counter!(MESSAGES_RECEIVED, "PUBLISH packets MQTT clients sent.");
    describe_counter!(
        MESSAGES_PUBLISHED,
        "Messages the hub itself published over MQTT."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        "Messages the broker dropped instead of queueing them for a client, by reason."
    );
    describe_counter!(
        SLOW_CLIENTS_DISCONNECTED,
        "MQTT sessions ended because a QoS 1 or 2 message to them did not fit in their queue."
    );
    describe_counter!(
        SHADOW_REQUESTS,
        "AWS shadow requests over MQTT by operation and outcome."
    );
    describe_histogram!(
        SHADOW_REQUEST_DURATION,
        "From an AWS shadow request's publish hook to its answer handed to the broker."
    );
    describe_histogram!(
        SYNC_LATENCY,
        "From an accepted shadow update's publish hook to its /update/accepted handed to the broker."
    );

    metrics::gauge!(CONNECTIONS).increment(0.0);
    let refusals = Refusal::ALL.map(Refusal::as_str);
    for reason in refusals.iter().chain(&OTHER_LOGIN_FAILURES) {
        metrics::counter!(LOGIN_FAILURES, "reason" => *reason).increment(0);
    }
    metrics::counter!(MESSAGES_RECEIVED).increment(0);
    metrics::counter!(MESSAGES_PUBLISHED).increment(0);
    metrics::counter!(MESSAGES_DROPPED, "reason" => QUEUE_FULL).increment(0);
    metrics::counter!(SLOW_CLIENTS_DISCONNECTED).increment(0);
    for op in ShadowOp::ALL {
        for outcome in [ACCEPTED, REJECTED] {
            let labels = [("op", op.as_str()), ("outcome", outcome)];
            metrics::counter!(SHADOW_REQUESTS, &labels).increment(0);
            // Registered, a histogram renders with zero counts until its first sample.
            let _ = metrics::histogram!(SHADOW_REQUEST_DURATION, &labels);
        }
    }
    let _ = metrics::histogram!(SYNC_LATENCY);
}

//! Answers AWS shadow requests with the engine, and pushes deltas and documents out.

use crate::broker::Broker;
use crate::identity::Identity;
use crate::metric;
use crate::rejection::Rejection;
use crate::shadow::document::{self, ShadowUpdate};
use doppel_engine::{Outcome, PendingUpdate, TwinChange};
use doppel_model::{
    Change, ConnectionStatus, DeviceId, HistoryKind, Millis, TenantId, TraceParent, Twin, TwinKey,
    UpdateRequest,
};
use doppel_wire::shadow::{self as topic, ShadowAnswer, ShadowOp, ShadowRequest};
use doppel_wire::{Topic, Verdict, filter};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

/// A shadow request read and, when it writes, handed to the engine: what is left is to wait for
/// its outcome and answer it ([`Prepared::answer`]). Splitting the two lets a connection's next
/// request be read while this one commits, with answers still sent in the order of the requests.
pub(crate) struct Prepared {
    identity: Arc<Identity>,
    thing: String,
    shadow: Option<String>,
    op: ShadowOp,
    /// When the publish hook began: where `doppel_sync_latency_seconds` starts.
    received: Instant,
    /// The request's W3C trace context (an MQTT 5 user property), carried on the answer.
    trace: Option<TraceParent>,
    span: tracing::Span,
    work: Work,
}

/// What answering a [`Prepared`] request takes.
enum Work {
    Refused(Refusal),
    /// Read when its turn comes, so it sees every write the connection sent before it.
    Get {
        key: TwinKey,
        token: Option<String>,
    },
    Delete {
        pending: PendingUpdate,
        token: Option<String>,
    },
    Update {
        pending: PendingUpdate,
        key: TwinKey,
        update: ShadowUpdate,
    },
}

/// Reads a request published on a shadow topic and, when it writes, hands the write to the
/// engine, which applies the writes handed to it in order. The caller has checked that the
/// client may publish there, and `received` is when its publish hook began. `trace` is the
/// request's W3C trace context (an MQTT 5 user property), carried on the change and on the
/// answer.
pub(crate) async fn prepare(
    broker: &impl Broker,
    identity: Arc<Identity>,
    request: ShadowRequest<'_>,
    payload: &[u8],
    received: Instant,
    trace: Option<TraceParent>,
) -> Prepared {
    let span = tracing::info_span!(
        "mqtt.shadow",
        op = request.op.as_str(),
        thing = request.thing,
        shadow = request.shadow,
        tenant = %identity.tenant,
        trace_id = doppel_engine::trace::trace_id_field(trace),
    );
    doppel_engine::trace::join_remote_trace(&span, trace);
    let work = work(broker, &identity, &request, payload, trace)
        .instrument(span.clone())
        .await
        .unwrap_or_else(Work::Refused);
    Prepared {
        identity,
        thing: request.thing.to_owned(),
        shadow: request.shadow.map(str::to_owned),
        op: request.op,
        received,
        trace,
        span,
        work,
    }
}

/// What [`Rejection::of_engine`] logs a failure as.
const SHADOW_REQUEST: &str = "a shadow request";

/// A refusal and the client token its `/rejected` document echoes.
type Refusal = (Rejection, Option<String>);

async fn work(
    broker: &impl Broker,
    identity: &Identity,
    request: &ShadowRequest<'_>,
    payload: &[u8],
    trace: Option<TraceParent>,
) -> Result<Work, Refusal> {
    let device = request
        .device()
        .map_err(|err| (Rejection::of_model(&err, request.name()), None))?;
    let key = TwinKey::new(identity.tenant.clone(), device);
    let engine = broker.engine().ok_or((Rejection::shutting_down(), None))?;
    let refused = |err, token| {
        (
            Rejection::of_engine(&err, request.name(), SHADOW_REQUEST),
            token,
        )
    };
    match request.op {
        ShadowOp::Get => {
            let token = document::parse_client_token(payload).map_err(|err| (err, None))?;
            Ok(Work::Get { key, token })
        }
        ShadowOp::Delete => {
            let token = document::parse_client_token(payload).map_err(|err| (err, None))?;
            let request = update_request(identity, Change::Delete, token.clone(), trace);
            match engine.submit(key, request).await {
                Ok(pending) => Ok(Work::Delete { pending, token }),
                Err(err) => Err(refused(err, token)),
            }
        }
        ShadowOp::Update => {
            // A rejection echoes the client token whenever the payload has a readable one; it
            // is looked for again only then, so an accepted update is parsed once.
            let update = document::parse_update(payload, broker.limits())
                .map_err(|err| (err, document::parse_client_token(payload).ok().flatten()))?;
            let request = update_request(
                identity,
                update.to_change(),
                update.client_token.clone(),
                trace,
            );
            match engine.submit(key.clone(), request).await {
                Ok(pending) => Ok(Work::Update {
                    pending,
                    key,
                    update,
                }),
                Err(err) => Err(refused(err, update.client_token)),
            }
        }
    }
}

impl Prepared {
    /// Waits for the request's outcome and publishes its answer.
    pub(crate) async fn answer(self, broker: &impl Broker) {
        let span = self.span.clone();
        self.respond(broker).instrument(span).await;
    }

    async fn respond(self, broker: &impl Broker) {
        let request = ShadowRequest {
            thing: &self.thing,
            shadow: self.shadow.as_deref(),
            op: self.op,
        };
        let now = broker.now();
        let (outcome, body) = match outcome(broker, &self.identity, &request, self.work, now).await
        {
            Ok(body) => (Verdict::Accepted, body),
            Err((error, token)) => (
                Verdict::Rejected,
                Answer::Document(document::rejected(&error, token.as_deref(), now)),
            ),
        };
        let reply = request.reply(outcome);
        let outcome = outcome.as_str();
        // Counted before it is answered, so that a client holding the answer sees it counted.
        metrics::counter!(
            metric::SHADOW_REQUESTS,
            "op" => request.op.as_str(),
            "outcome" => outcome
        )
        .increment(1);
        broker
            .publish_traced(&self.identity.tenant, &reply, &body, self.trace.as_ref())
            .await;
        tracing::debug!(outcome, "shadow request answered");
        let elapsed = self.received.elapsed();
        metrics::histogram!(
            metric::SHADOW_REQUEST_DURATION,
            "op" => request.op.as_str(),
            "outcome" => outcome
        )
        .record(elapsed);
        if request.op == ShadowOp::Update && outcome == metric::ACCEPTED {
            // From the publish hook to `/update/accepted` handed to the broker: parsing, the
            // durable commit, rendering and routing the answer; not the network either way.
            metrics::histogram!(metric::SYNC_LATENCY).record(elapsed);
        }
    }
}

/// The document a request is answered with.
enum Answer {
    Document(Value),
    /// `/update/accepted`, written out from the request itself ([`document::UpdateAccepted`]).
    Updated {
        update: ShadowUpdate,
        twin: Arc<Twin>,
        now: Millis,
    },
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Document(document) => document.serialize(serializer),
            Answer::Updated { update, twin, now } => {
                document::update_accepted(update, twin, *now).serialize(serializer)
            }
        }
    }
}

/// The answer's document, once the request's write (if any) is durable.
async fn outcome(
    broker: &impl Broker,
    identity: &Identity,
    request: &ShadowRequest<'_>,
    work: Work,
    now: Millis,
) -> Result<Answer, Refusal> {
    let name = request.name();
    let refused = |err, token| (Rejection::of_engine(&err, name, SHADOW_REQUEST), token);
    match work {
        Work::Refused(refusal) => Err(refusal),
        Work::Get { key, token } => {
            let engine = broker
                .engine()
                .ok_or((Rejection::shutting_down(), token.clone()))?;
            match engine.get(&key) {
                Ok(Some(twin)) => Ok(Answer::Document(document::get_accepted(
                    &twin,
                    token.as_deref(),
                    now,
                ))),
                Ok(None) => Err((Rejection::not_found(name), token)),
                Err(err) => Err(refused(err, token)),
            }
        }
        Work::Delete { pending, token } => match pending.outcome().await {
            Ok(Outcome::Changed(twin) | Outcome::Stale(twin)) => Ok(Answer::Document(
                document::delete_accepted(twin.shadow_version, token.as_deref(), now),
            )),
            Err(err) => Err(refused(err, token)),
        },
        Work::Update {
            pending,
            key,
            update,
        } => match pending.outcome().await {
            Ok(Outcome::Changed(twin) | Outcome::Stale(twin)) => {
                let own_twin = identity.device.as_ref() == Some(&key.device);
                if own_twin && twin.connection.status != ConnectionStatus::Connected {
                    broker.presence_caught_up(&key).await;
                }
                Ok(Answer::Updated { update, twin, now })
            }
            Err(err) => Err(refused(err, update.client_token)),
        },
    }
}

fn update_request(
    identity: &Identity,
    change: Change,
    client_token: Option<String>,
    trace: Option<TraceParent>,
) -> UpdateRequest {
    UpdateRequest {
        change,
        expected_version: None,
        changed_by: identity.principal.clone(),
        change_reason: None,
        client_token,
        trace,
    }
}

/// Sends the current delta of `device`'s classic shadow again, if it has one.
pub(crate) async fn resend_delta(broker: &impl Broker, tenant: &TenantId, device: &DeviceId) {
    let Some(engine) = broker.engine() else {
        return;
    };
    let key = TwinKey::new(tenant.clone(), device.clone());
    let Ok(Some(twin)) = engine.get(&key) else {
        return;
    };
    if let Some(body) = document::current_delta(&twin, broker.now()) {
        let (thing, shadow) = topic::shadow_of(device);
        broker
            .publish(
                tenant,
                &topic::answer(thing, shadow, ShadowAnswer::Delta),
                &body,
            )
            .await;
    }
}

/// After a subscription: when it brings a shadow's `/update/delta`, sends that shadow's current
/// delta (AWS devices miss deltas published while they were away).
pub(crate) async fn delta_on_subscribe(broker: &impl Broker, identity: &Identity, filter: &str) {
    // An exact delta topic names its shadow (an application may watch any thing's).
    if let Topic::ShadowAnswer {
        thing,
        shadow,
        answer: ShadowAnswer::Delta,
    } = Topic::parse(filter)
    {
        if let Ok(device) = topic::twin_device(thing, shadow) {
            resend_delta(broker, &identity.tenant, &device).await;
        }
        return;
    }
    // A wildcard filter: the client's own classic shadow, if the filter covers its delta.
    if let Some(device) = &identity.device
        && filter::matches(
            filter,
            &topic::answer(device.as_str(), None, ShadowAnswer::Delta),
        )
    {
        resend_delta(broker, &identity.tenant, device).await;
    }
}

/// Publishes `/update/delta` and `/update/documents` for every durable change of a shadow,
/// whoever made it (HTTP or MQTT), until the engine stops.
pub(crate) async fn run_feed(broker: Arc<impl Broker>, mut changes: mpsc::Receiver<TwinChange>) {
    while let Some(change) = changes.recv().await {
        announce(&*broker, &change).await;
    }
}

async fn announce(broker: &impl Broker, change: &TwinChange) {
    let state_changed = matches!(
        change.kind,
        HistoryKind::Desired | HistoryKind::Reported | HistoryKind::State
    );
    if !state_changed {
        return;
    }
    let (thing, shadow) = topic::shadow_of(&change.key.device);
    let tenant = &change.key.tenant;
    let delta_topic = topic::answer(thing, shadow, ShadowAnswer::Delta);
    let documents_topic = topic::answer(thing, shadow, ShadowAnswer::Documents);
    // Most changes of a large fleet have nobody listening: skip decoding and rendering then.
    // A report cannot remove desired keys, so after a report that leaves no delta there is no
    // `/update/delta` to send: the common case of a device in sync costs no decoding of the
    // previous twin (it was an eighth of the hub's CPU under shadow load), nor the router
    // lookup, which collects every subscriber of the topic.
    let wants_delta = (change.kind != HistoryKind::Reported || change.current.has_delta())
        && broker.has_subscribers(tenant, &delta_topic).await;
    let wants_documents = broker.has_subscribers(tenant, &documents_topic).await;
    if !wants_delta && !wants_documents {
        return;
    }
    // Only for changes someone receives, so a fleet nobody watches builds no spans.
    let span = tracing::debug_span!(
        "mqtt.announce",
        tenant = %tenant,
        thing,
        shadow,
        trace_id = doppel_engine::trace::trace_id_field(change.trace),
    );
    doppel_engine::trace::join_remote_trace(&span, change.trace);
    let publish = async {
        let previous = match change.previous_twin() {
            Ok(previous) => previous,
            Err(err) => {
                tracing::error!(error = %err, twin = %change.key, "cannot decode a twin's previous state");
                return;
            }
        };
        let now = broker.now();
        let token = change.client_token.as_deref();
        let trace = change.trace.as_ref();
        if wants_delta
            && let Some(body) = document::delta(previous.as_ref(), &change.current, token, now)
        {
            broker
                .publish_traced(tenant, &delta_topic, &body, trace)
                .await;
        }
        if wants_documents {
            let body = document::documents(previous.as_ref(), &change.current, token, now);
            broker
                .publish_traced(tenant, &documents_topic, &body, trace)
                .await;
        }
    };
    publish.instrument(span).await;
}

#[cfg(test)]
mod tests;

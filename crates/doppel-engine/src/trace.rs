//! Joining the caller's distributed trace. Adapters make one span per request, and the change
//! feeds one per announced change; when the caller named its trace (a W3C `traceparent`), an
//! exporter the binary installs (OTLP) makes that span a child of the caller's remote span.
//! Like the metrics facade, this does nothing until the binary installs a hook, so libraries
//! and tests need no tracing back end.

use doppel_model::{TraceId, TraceParent};
use std::sync::OnceLock;
use tracing::Span;
use tracing::field::DisplayValue;

/// Makes `span` (not yet entered) a child of the remote span `parent` names.
pub type RemoteParentHook = fn(span: &Span, parent: TraceParent);

static HOOK: OnceLock<RemoteParentHook> = OnceLock::new();

/// Installs the process's hook; returns `false`, changing nothing, if one was installed already.
pub fn install_remote_parent(hook: RemoteParentHook) -> bool {
    HOOK.set(hook).is_ok()
}

/// Hands `span` and the caller's trace context to the installed hook, if both exist. Call it
/// before the span is first entered: exporters fix a span's parent then.
pub fn join_remote_trace(span: &Span, trace: Option<TraceParent>) {
    if let (Some(hook), Some(trace)) = (HOOK.get(), trace)
        && !span.is_disabled()
    {
        hook(span, trace);
    }
}

/// The `trace_id` field of a span: the trace's id as logs and tracing back ends print it, or
/// nothing for an untraced request.
pub fn trace_id_field(trace: Option<TraceParent>) -> Option<DisplayValue<TraceId>> {
    trace.map(|trace| tracing::field::display(trace.trace_id()))
}

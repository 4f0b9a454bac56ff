//! Logs and trace export: the tracing subscriber `doppel serve` installs. Logs go to stderr as
//! text or JSON lines; with `log.otlp_endpoint` (and a binary built with `--features otlp`) the
//! same spans are also exported over OTLP/HTTP.

use crate::config::{Config, LogFormat, LogSection};
use anyhow::Context;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the span exporter running; [`Telemetry::shutdown`] sends what it still holds.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the global subscriber. Call it outside the async runtime: the OTLP exporter's
/// blocking HTTP client must not be created inside one.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let filter = filter(&config.log)?;
    // Colour codes help a person at a terminal and garble a file or a log collector.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let logs = match config.log.format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = match &config.log.otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otlp::layer(endpoint)?;
                doppel_engine::trace::install_remote_parent(otlp::join_remote_parent);
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        registry
            .with(layer)
            .try_init()
            .context("cannot install the log subscriber")?;
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry
            .try_init()
            .context("cannot install the log subscriber")?;
        Ok(Telemetry {})
    }
}

/// The filter `log.level` names.
pub fn filter(log: &LogSection) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(&log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", log.level))
}

impl Telemetry {
    /// Exports the spans still buffered. Call it after the runtime has stopped.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            // The subscriber may be gone by now: say it on stderr directly.
            eprintln!("doppel: could not export the last trace spans: {err}");
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use anyhow::Context;
    use doppel_model::TraceParent;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    };
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The path of the trace signal under an OTLP/HTTP collector's base URL.
    const TRACES_PATH: &str = "/v1/traces";

    /// The tracing layer that exports spans to `endpoint`, and the provider that owns the
    /// exporter's batch thread.
    pub(super) fn layer<S>(
        endpoint: &str,
    ) -> anyhow::Result<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        SdkTracerProvider,
    )>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()
            .with_context(|| format!("cannot export spans to log.otlp_endpoint {endpoint}"))?;
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("doppel").build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("doppel");
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }

    /// Makes `span` a child of the caller's remote span, so exported spans join its trace.
    pub(super) fn join_remote_parent(span: &tracing::Span, parent: TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id().0),
            SpanId::from_bytes(parent.parent_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        // Fails only for a span already entered or filtered out; it then keeps its own trace.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// The collector's traces URL: `endpoint` as given when it names a path, else with
    /// `/v1/traces` (what OTLP/HTTP collectors listen on) appended.
    pub(super) fn traces_url(endpoint: &str) -> String {
        let after_scheme = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest);
        match after_scheme.find('/') {
            Some(at) if after_scheme.len() > at + 1 => endpoint.to_owned(),
            _ => format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/')),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::traces_url;

        #[test]
        fn a_base_url_gets_the_traces_path() {
            assert_eq!(
                traces_url("http://127.0.0.1:4318"),
                "http://127.0.0.1:4318/v1/traces"
            );
            assert_eq!(
                traces_url("http://collector:4318/"),
                "http://collector:4318/v1/traces"
            );
            assert_eq!(
                traces_url("http://collector:4318/custom/traces"),
                "http://collector:4318/custom/traces"
            );
        }
    }
}

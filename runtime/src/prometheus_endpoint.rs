//! The live metrics endpoint (`[telemetry] prometheus = "127.0.0.1:PORT"`): installs the
//! Prometheus exporter behind the `metrics` facade once per process, with real histogram
//! buckets for the catalogue's histograms, a `# HELP` line for every series and every series
//! registered at zero ([`grlhf_actors::metric_series`]; docs/observability.md).

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use grlhf_actors::ledger::DropReason;
use grlhf_actors::metric_series::{describe_and_register, SeriesKind, SERIES};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Where this process serves metrics, once it does: the recorder is process-wide, so the runs
/// of a pipeline share one endpoint.
static SERVING: Mutex<Option<SocketAddr>> = Mutex::new(None);

/// Serves the metrics on `addr` (`[telemetry] prometheus`). A second call with the same address
/// (the next run of a pipeline) keeps the endpoint; another address is refused.
pub fn serve(addr: &str) -> Result<()> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow!("telemetry.prometheus = `{addr}`: {e}"))?;
    let mut serving = SERVING.lock().unwrap();
    match *serving {
        Some(at) if at == parsed => return Ok(()),
        Some(at) => bail!(
            "telemetry.prometheus = `{addr}`: this process already serves metrics on {at} (one endpoint per process)"
        ),
        None => {}
    }
    let mut builder = PrometheusBuilder::new().with_http_listener(parsed);
    for s in SERIES.iter().filter(|s| s.kind == SeriesKind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(s.name.to_string()), s.buckets)
            .map_err(|e| anyhow!("telemetry.prometheus: buckets of {}: {e}", s.name))?;
    }
    builder
        .install()
        .map_err(|e| anyhow!("telemetry.prometheus = `{addr}`: {e}"))?;
    describe_and_register(&DropReason::BUILT_IN);
    *serving = Some(parsed);
    Ok(())
}

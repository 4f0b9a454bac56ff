//! `doppel bench`: tools for the benchmark scripts (`scripts/bench*`, docs/BENCHMARKS.md).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use doppel_model::policy::ReplicaConfig;
use doppel_model::{
    Applied, Change, DeviceId, Limits, Millis, TenantId, TwinKey, UpdateRequest, apply,
};
use doppel_store::{FjallStore, HistoryBuckets, TwinStore, TwinWrite};
use std::path::PathBuf;
use std::time::Instant;

mod cpu;
mod http;

/// The sensor document the engine and MQTT benchmarks use, so every figure is about one shape.
#[path = "../../doppel-engine/benches/fixtures/sensor.rs"]
mod sensor;

/// Twins per store commit while seeding: large enough that fsyncs do not dominate, small
/// enough to keep a batch's memory small.
const SEED_BATCH: usize = 10_000;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Fill a new data folder with twins of the benchmark's ~300-byte sensor document (reported
    /// and a differing desired state, so every delta is non-empty), written straight to the
    /// store; a hub started on the folder then loads them.
    Seed(SeedArgs),
    /// Load a running hub's HTTP API from closed-loop workers (GET twin or PATCH desired on
    /// seeded twins) and print throughput and latency percentiles in one `result` line.
    Http(http::HttpArgs),
}

#[derive(Args, Debug)]
struct SeedArgs {
    /// The data folder to fill; it must not hold a store yet.
    #[arg(long)]
    data_dir: PathBuf,
    /// How many twins.
    #[arg(long, default_value_t = 1_000_000)]
    twins: usize,
    /// The twins' tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Device ids are `{prefix}-{n:07}`.
    #[arg(long, default_value = "sensor")]
    prefix: String,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Seed(args) => seed(&args),
        BenchCommand::Http(args) => http::run(&args),
    }
}

fn seed(args: &SeedArgs) -> anyhow::Result<()> {
    let tenant = TenantId::new(args.tenant.as_str()).context("--tenant")?;
    DeviceId::new(format!("{}-0000000", args.prefix)).context("--prefix")?;
    if args.data_dir.exists()
        && std::fs::read_dir(&args.data_dir)
            .with_context(|| format!("cannot read {}", args.data_dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "--data-dir {} is not empty; seed a new folder",
            args.data_dir.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let store = FjallStore::open(&args.data_dir, HistoryBuckets::new(24 * 3600 * 1000))
        .with_context(|| format!("cannot open a store in {}", args.data_dir.display()))?;
    let started = Instant::now();
    let now = Millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis()),
        )
        .unwrap_or(i64::MAX),
    );
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let indices: Vec<usize> = (0..args.twins).collect();
    let per_thread = indices.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = indices
            .chunks(per_thread)
            .map(|part| {
                let (store, tenant, prefix) = (&store, &tenant, args.prefix.as_str());
                scope.spawn(move || -> anyhow::Result<()> {
                    for batch in part.chunks(SEED_BATCH) {
                        let writes = batch
                            .iter()
                            .map(|&index| seed_write(tenant, prefix, index, now))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        store.commit(&writes).context("a seed commit failed")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
        }
        Ok(())
    })?;
    println!(
        "seeded {} twins in {} in {:.1} s",
        args.twins,
        args.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The store write of twin `index`: created by a report, then given a desired state.
fn seed_write(
    tenant: &TenantId,
    prefix: &str,
    index: usize,
    now: Millis,
) -> anyhow::Result<TwinWrite> {
    let key = TwinKey::new(
        tenant.clone(),
        DeviceId::new(format!("{prefix}-{index:07}"))?,
    );
    let spread = |modulus: usize| (index % modulus) as f64;
    let report = sensor::report(&sensor::Readings {
        temperature: 18.0 + spread(100) / 10.0,
        humidity: 30.0 + spread(400) / 10.0,
        pressure: 990.0 + spread(400) / 10.0,
        co2_ppm: 400 + (index % 800) as u64,
        battery_level: (index % 101) as u64,
        voltage: 3.3 + spread(90) / 100.0,
        charging: index % 2 == 1,
        light_level: (index % 7) as u64,
        rssi: -40 - (index % 50) as i64,
        uptime_s: 60,
    });
    let limits = Limits::default();
    // Seeded twins are the hub's own, as a hub nobody syncs with writes them.
    let replica = ReplicaConfig::hub();
    let context = doppel_model::Context {
        now,
        limits: &limits,
        replica: &replica,
    };
    let change = |change: Change| UpdateRequest {
        change,
        expected_version: None,
        changed_by: "doppel bench seed".into(),
        change_reason: None,
        client_token: None,
        trace: None,
    };
    let Applied::Changed { twin, .. } = apply(
        None,
        &change(Change::Reported {
            patch: report,
            device_version: Some(1),
        }),
        &context,
    )?
    else {
        bail!("a new twin's first report cannot be stale");
    };
    let Applied::Changed { twin, entry } = apply(
        Some(twin),
        &change(Change::DesiredPatch(sensor::desired())),
        &context,
    )?
    else {
        bail!("a desired change cannot be stale");
    };
    Ok(TwinWrite::of(&key, &twin, &entry))
}

//! The throughput benchmark: fleetup at Graph's line (the simulator, as one
//! tenant), and fleetup's own cost against a server that answers at once,
//! side by side with a bare loop of the same HTTP client.
//!
//! `cargo bench --bench throughput` runs everything (about ten minutes; the
//! last part needs nginx: `apt-get install nginx-light`). Name scenarios to
//! run only those: `cargo bench --bench throughput -- line cost`. Figures go
//! to stdout and to `target/bench-throughput.txt`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetup::auth::{Credentials, Secret};
use fleetup::config::RunConfig;
use fleetup::graph::GraphTarget;
use fleetup::retry::Backoff;
use fleetup::simulator::{RetryAfterForm, SimConfig, Simulator};
use futures::StreamExt;

struct Bench {
    dir: tempfile::TempDir,
    lines: Vec<String>,
}

impl Bench {
    fn say(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }

    fn input(&self, name: &str, rows: usize) -> PathBuf {
        let path = self.dir.path().join(name);
        if path.exists() {
            return path;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "userPrincipalName,installationId").unwrap();
        for i in 0..rows {
            writeln!(
                out,
                "user{i}@contoso.onmicrosoft.com,MCMjMiMjNjQ5ZGVmNTItZjQ5Zi00ZTFjLWI1ZDctMjA0ZGMxYjM4ZmIwIyMx{i:08}+/=="
            )
            .unwrap();
        }
        path
    }

    fn report(&self) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("report-{}.csv", fastrand::u64(..)));
        path
    }
}

fn config(input: &Path, report: PathBuf, root: &str, token: String, rate: f64) -> RunConfig {
    RunConfig {
        input: input.to_owned(),
        delimiter: None,
        report,
        target: GraphTarget {
            root: root.to_owned(),
            version: "v1.0".into(),
        },
        credentials: Credentials::EnvToken(Secret::new(token)),
        rate,
        burst: fleetup::config::burst_for(rate),
        concurrency: ((rate * 2.0).ceil() as usize).clamp(4, 256),
        adaptive_concurrency: true,
        read_rate: 30.0,
        max_attempts: 8,
        timeout: Duration::from_secs(30),
        backoff: Backoff::default(),
        progress: false,
        resume: false,
        retry_failed: false,
        breaker: 50,
        mode: Default::default(),
    }
}

/// A tenant at Graph's published line, with Graph-like latency.
fn tenant(latency: (u64, u64)) -> SimConfig {
    SimConfig {
        rate: Some(30.0),
        burst: 30,
        retry_after: RetryAfterForm::Mixed,
        latency: (
            Duration::from_millis(latency.0),
            Duration::from_millis(latency.1),
        ),
        ..SimConfig::default()
    }
}

async fn at_the_line(bench: &mut Bench, name: &str, rate: f64, rows: usize) {
    let sim = Simulator::start(tenant((150, 600))).await.unwrap();
    let input = bench.input(&format!("line-{rows}.csv"), rows);
    let token = sim.mint_token(Duration::from_secs(7200));
    let config = config(&input, bench.report(), &sim.url(), token, rate);

    let started = Instant::now();
    let summary = fleetup::engine::run(&config).await.unwrap();
    let wall = started.elapsed().as_secs_f64();

    let books = sim.books();
    let ideal = (rows as f64 - 30.0) / 30.0;
    bench.say(format!(
        "{name}: {rows} rows, limit 30/s burst 30, latency 150-600 ms, --rate {rate}: \
         wall {wall:.1}s = {:.3} x ideal {ideal:.1}s; 429s {} = {:.2}% of rows; \
         calls inside a window {}; upgraded {}",
        wall / ideal,
        books.throttled,
        100.0 * books.throttled as f64 / rows as f64,
        books.calls_in_window,
        summary.of(fleetup::report::Outcome::Upgraded),
    ));
}

async fn moving_line(bench: &mut Bench, rows: usize) {
    let sim = Arc::new(Simulator::start(tenant((150, 600))).await.unwrap());
    let input = bench.input(&format!("line-{rows}.csv"), rows);
    let token = sim.mint_token(Duration::from_secs(7200));
    let config = config(&input, bench.report(), &sim.url(), token, 30.0);
    let third = rows as u64 / 3;
    let mover = tokio::spawn({
        let sim = sim.clone();
        async move {
            while sim.books().upgraded < third {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sim.set_rate(Some(10.0));
            while sim.books().upgraded < 2 * third {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sim.set_rate(Some(30.0));
        }
    });

    let started = Instant::now();
    fleetup::engine::run(&config).await.unwrap();
    let wall = started.elapsed().as_secs_f64();
    mover.abort();

    let books = sim.books();
    let third = third as f64;
    let ideal = (third - 30.0) / 30.0 + third / 10.0 + (rows as f64 - 2.0 * third) / 30.0;
    bench.say(format!(
        "moving line: {rows} rows, limit 30/s -> 10/s at a third -> 30/s at two thirds: \
         wall {wall:.1}s = {:.3} x ideal {ideal:.1}s; 429s {}; calls inside a window {}",
        wall / ideal,
        books.throttled,
        books.calls_in_window
    ));
}

async fn slow_server(bench: &mut Bench, rows: usize) {
    let sim = Arc::new(Simulator::start(tenant((2000, 2000))).await.unwrap());
    let input = bench.input(&format!("line-{rows}.csv"), rows);
    let token = sim.mint_token(Duration::from_secs(7200));
    let config = config(&input, bench.report(), &sim.url(), token, 30.0);
    // The simulator counts a call when it arrives, two seconds before the
    // answer: the rate is taken from the fifth second to the last arrival.
    let watch = tokio::spawn({
        let sim = sim.clone();
        async move {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (at_five, done_at_five) = (Instant::now(), sim.books().upgraded);
            let mut last = (at_five, done_at_five);
            while sim.books().upgraded < rows as u64 && started.elapsed() < Duration::from_secs(600)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
                last = (Instant::now(), sim.books().upgraded);
            }
            (last.1 - done_at_five) as f64 / (last.0 - at_five).as_secs_f64()
        }
    });

    fleetup::engine::run(&config).await.unwrap();
    let rate = watch.await.unwrap();

    bench.say(format!(
        "slow server: {rows} rows, latency 2 s, limit 30/s, no --concurrency: \
         effective rate from the fifth second to the last arrival {rate:.2}/s = {:.3} x 30/s",
        rate / 30.0
    ));
}

/// nginx answering 204 to everything, on a free loopback port.
fn nginx(dir: &Path) -> Option<(Child, String)> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 60s;\n\
               server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }} }}\n",
            dir = dir.display()
        ),
    )
    .ok()?;
    let child = Command::new(binary)
        .args(["-c", conf.to_str()?, "-p", dir.to_str()?])
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some((child, format!("http://127.0.0.1:{port}")))
}

/// The same requests fleetup sends, fired through `buffer_unordered` with no
/// CSV, pacing or report.
async fn bare_loop(root: &str, rows: usize, concurrency: usize) -> f64 {
    let http = reqwest::Client::builder().build().unwrap();
    let started = Instant::now();
    futures::stream::iter(0..rows)
        .map(|i| {
            let url = format!(
                "{root}/v1.0/users/user{i}%40contoso.onmicrosoft.com/teamwork/installedApps/\
                 MCMjMiMjNjQ5ZGVmNTItZjQ5Zi00ZTFjLWI1ZDctMjA0ZGMxYjM4ZmIwIyMx{i:08}%2B%2F%3D%3D/upgrade"
            );
            let request = http
                .post(url)
                .bearer_auth("token")
                .header("client-request-id", uuid::Uuid::new_v4().to_string())
                .header(reqwest::header::CONTENT_LENGTH, "0")
                .timeout(Duration::from_secs(30));
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(concurrency)
        .for_each(|answer| async move {
            assert_eq!(answer.ok(), Some(204));
        })
        .await;
    rows as f64 / started.elapsed().as_secs_f64()
}

async fn own_cost(bench: &mut Bench, rows: usize) {
    let Some((mut server, root)) = nginx(bench.dir.path()) else {
        bench.say("own cost: skipped, nginx is not installed (apt-get install nginx-light)".into());
        return;
    };
    let concurrency = 64;
    let input = bench.input(&format!("cost-{rows}.csv"), rows);
    let mut run = config(&input, bench.report(), &root, "token".into(), 1e7);
    run.concurrency = concurrency;
    run.adaptive_concurrency = false;

    // Warm both paths once, then measure them back to back, twice.
    bare_loop(&root, 5_000, concurrency).await;
    let mut figures = Vec::new();
    for _ in 0..2 {
        let bare = bare_loop(&root, rows, concurrency).await;
        run.report = bench.report();
        let started = Instant::now();
        fleetup::engine::run(&run).await.unwrap();
        let ours = rows as f64 / started.elapsed().as_secs_f64();
        figures.push((bare, ours));
    }
    for (bare, ours) in figures {
        bench.say(format!(
            "own cost: {rows} rows against nginx `return 204`, concurrency {concurrency}: \
             fleetup {ours:.0} rows/s with the report, bare loop {bare:.0} req/s, ratio {:.3}",
            ours / bare
        ));
    }

    for rows in [100_000, 1_000_000] {
        let input = bench.input(&format!("cost-{rows}.csv"), rows);
        let (peak_kb, wall) = peak_memory(&input, &root, bench.report());
        bench.say(format!(
            "memory: {rows} rows: peak RSS {:.1} MB, wall {wall:.1}s",
            peak_kb as f64 / 1024.0
        ));
    }
    // SIGTERM, not SIGKILL: the master then takes its worker down with it.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();

    let input = bench.input("cost-1000000.csv", 1_000_000);
    let first = first_request(&input, bench.report());
    bench.say(format!(
        "time to first request (1,000,000-row input, process start to the first request \
         on the wire): {:.1} ms",
        first.as_secs_f64() * 1000.0
    ));
}

fn fleetup_command(input: &Path, root: &str, report: PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetup"));
    command
        .args(["run", input.to_str().unwrap(), "--graph-url", root])
        .args(["--rate", "10000000", "--concurrency", "64", "--no-progress"])
        .arg("--report")
        .arg(report)
        .env("GRAPH_TOKEN", "token")
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Peak resident memory (kB) and wall time of a whole run of the binary.
fn peak_memory(input: &Path, root: &str, report: PathBuf) -> (u64, f64) {
    let inner = fleetup_command(input, root, report);
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%M"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    let started = Instant::now();
    let output = command.stdout(Stdio::null()).output().unwrap();
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stderr);
    let peak = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    (peak, wall)
}

/// From spawning the binary to the first request arriving at a listener.
fn first_request(input: &Path, report: PathBuf) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let started = Instant::now();
    let mut child = fleetup_command(input, &root, report).spawn().unwrap();
    let (mut socket, _) = listener.accept().unwrap();
    let mut first = [0u8; 1];
    socket.read_exact(&mut first).unwrap();
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn main() {
    // RUST_LOG=fleetup=info shows the pacer's decisions as a run logs them.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let rows: usize = std::env::var("FLEETUP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut bench = Bench {
        dir: tempfile::tempdir().unwrap(),
        lines: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        if runs("line") {
            at_the_line(&mut bench, "at the line", 30.0, rows).await;
        }
        if runs("toomuch") {
            at_the_line(&mut bench, "told too much", 90.0, rows).await;
        }
        if runs("moving") {
            moving_line(&mut bench, rows).await;
        }
        if runs("slow") {
            slow_server(&mut bench, rows / 2).await;
        }
        if runs("cost") {
            own_cost(&mut bench, 200_000).await;
        }
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-throughput.txt");
    std::fs::write(&out, bench.lines.join("\n") + "\n").unwrap();
    println!("figures written to {}", out.display());
}

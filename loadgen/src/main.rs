//! `loadgen`: measures Switchboard's event path from the outside.
//!
//! 1. Bootstraps `--sessions` sessions through `session2` on the first `--ws` instance.
//! 2. Opens one WebSocket per session on the `--ws` instances (round robin) and checks the
//!    `welcome`.
//! 3. Publishes through `POST /api/sessions/{id}/events` on the `--publish` instances, at a
//!    fixed `--rate` (events/s) or as fast as possible with `--in-flight` requests.
//! 4. Reports published/delivered/lost/duplicated, delivered/s, end-to-end latency
//!    percentiles (from the moment the publish request is handed to the HTTP client to the
//!    frame's arrival; the pacer's own lag is reported separately so stalls stay visible),
//!    and, given `--pid`, each server's RSS and CPU.
//!
//! With `--idle` it only opens the sockets and reports RSS per idle socket.
//! Traffic goes only where the URLs point; use loopback addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "Load generator for Switchboard's event path")]
struct Args {
    /// Instances that hold the sockets (comma-separated base URLs).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    ws: Vec<String>,
    /// Instances that receive the publishes (default: the --ws ones).
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// Server API key.
    #[arg(long, env = "SWITCHBOARD_API_KEY")]
    api_key: String,
    /// Sessions (one socket each).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Events per second in total; 0 means as fast as --in-flight allows.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Publish requests in flight at most.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Events per publish request: 1 uses `POST /api/sessions/{id}/events`, more uses
    /// `POST /api/events/batch` with that many events (consecutive sessions).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Only open the sockets and report memory per idle socket.
    #[arg(long)]
    idle: bool,
    /// Server process ids to sample RSS and CPU from.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Scenario used for bootstrapping.
    #[arg(long, default_value = "simpleHandoff")]
    scenario: String,
}

struct Session {
    id: String,
    token: String,
}

/// Per-session receive state: last seq seen and duplicates.
struct RecvStats {
    received: AtomicU64,
    duplicated: AtomicU64,
    gaps: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.publish.is_empty() {
        args.publish = args.ws.clone();
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.in_flight.max(64))
        .timeout(Duration::from_secs(30))
        .build()?;
    let rss_before = rss_kib(&args.pid);
    let sessions = bootstrap(&http, &args).await?;
    let rss_sessions = rss_kib(&args.pid);
    eprintln!("bootstrapped {} sessions", sessions.len());

    let base = Instant::now();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let stats = Arc::new(RecvStats {
        received: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
    });
    let sockets = open_sockets(&args, &sessions, base, hist.clone(), stats.clone()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_sockets = rss_kib(&args.pid);
    eprintln!("opened {} sockets", sockets);
    let per_socket: Vec<String> = rss_sessions
        .iter()
        .zip(&rss_sockets)
        .map(|(a, b)| {
            format!(
                "{:.2}",
                (*b as f64 - *a as f64) * 1024.0 / 1024.0 / sockets as f64
            )
        })
        .collect();
    println!(
        "rss_kib before={:?} after_sessions={:?} after_sockets={:?} per_idle_socket_kib={:?}",
        rss_before, rss_sessions, rss_sockets, per_socket
    );
    if args.idle {
        return Ok(());
    }

    let cpu_before = cpu_ticks(&args.pid);
    let t0 = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let pacer_lag = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    publish_load(
        &args, &http, &sessions, base, &published, &failed, &pacer_lag,
    )
    .await;
    let publish_secs = t0.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(&args.pid);

    // Let in-flight deliveries land.
    let want = published.load(Ordering::Relaxed);
    for _ in 0..100 {
        if stats.received.load(Ordering::Relaxed) >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = stats.received.load(Ordering::Relaxed);
    let h = hist.lock().await;
    let lag = pacer_lag.lock().await;
    let ticks = clock_ticks();
    let cpu: Vec<String> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(a, b)| format!("{:.1}%", (b - a) as f64 / ticks / publish_secs * 100.0))
        .collect();
    println!(
        "mode={} sessions={} duration_s={:.1} published={} failed={} delivered={} lost={} duplicated={} gaps={}",
        if args.rate == 0 {
            format!("max(in_flight={})", args.in_flight)
        } else {
            format!("rate({}/s)", args.rate)
        },
        sessions.len(),
        publish_secs,
        want,
        failed.load(Ordering::Relaxed),
        received,
        want.saturating_sub(received),
        stats.duplicated.load(Ordering::Relaxed),
        stats.gaps.load(Ordering::Relaxed),
    );
    println!("delivered_per_s={:.0}", received as f64 / publish_secs);
    println!(
        "latency_ms p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
    println!(
        "pacer_lag_ms p99={:.3} max={:.3}",
        ms(lag.value_at_quantile(0.99)),
        ms(lag.max())
    );
    println!("server_cpu={cpu:?} rss_kib_end={:?}", rss_kib(&args.pid));
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn bootstrap(http: &reqwest::Client, args: &Args) -> anyhow::Result<Vec<Session>> {
    let url = format!("{}/api/session2?scenario_id={}", args.ws[0], args.scenario);
    let sem = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for _ in 0..args.sessions {
        let (http, url, sem) = (http.clone(), url.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let v: Value = http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, anyhow::Error>(Session {
                id: v["session_id"].as_str().context("session_id")?.to_owned(),
                token: v["events"]["token"].as_str().context("token")?.to_owned(),
            })
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

async fn open_sockets(
    args: &Args,
    sessions: &[Session],
    base: Instant,
    hist: Arc<Mutex<Histogram<u64>>>,
    stats: Arc<RecvStats>,
) -> anyhow::Result<usize> {
    let sem = Arc::new(Semaphore::new(200));
    let mut opening = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let server = &args.ws[i % args.ws.len()];
        let url = format!(
            "{}/api/ws?session_id={}&token={}",
            server.replacen("http", "ws", 1),
            s.id,
            s.token
        );
        let (sem, hist, stats) = (sem.clone(), hist.clone(), stats.clone());
        opening.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await?;
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("\"welcome\"") => {}
                other => bail!("expected welcome, got {other:?}"),
            }
            drop(permit);
            tokio::spawn(async move {
                let mut last = 0u64;
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(t) = msg else { continue };
                    let now = base.elapsed().as_micros() as u64;
                    let text = t.as_str();
                    let (Some(seq), Some(sent)) = (field(text, "\"seq\":"), field(text, "\"t\":"))
                    else {
                        continue;
                    };
                    if seq <= last {
                        stats.duplicated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if seq > last + 1 {
                        stats.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    last = seq;
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    let _ = hist.lock().await.record(now.saturating_sub(sent).max(1));
                }
            });
            Ok(())
        }));
    }
    let mut n = 0;
    for t in opening {
        t.await??;
        n += 1;
    }
    Ok(n)
}

/// The unsigned number after `key` in `text` (cheap scan; envelopes are our own JSON).
fn field(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn publish_load(
    args: &Args,
    http: &reqwest::Client,
    sessions: &[Session],
    base: Instant,
    published: &Arc<AtomicU64>,
    failed: &Arc<AtomicU64>,
    pacer_lag: &Arc<Mutex<Histogram<u64>>>,
) {
    // Publish to an instance other than the one holding the socket, when there are several.
    let targets: Arc<Vec<(String, String)>> = Arc::new(
        sessions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let holder = i % args.ws.len();
                (
                    args.publish[(holder + 1) % args.publish.len()].clone(),
                    s.id.clone(),
                )
            })
            .collect(),
    );
    let batch = args.batch.max(1);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let key = Arc::new(args.api_key.clone());
    let ctx = Ctx {
        http: http.clone(),
        targets,
        key,
        published: published.clone(),
        failed: failed.clone(),
        base,
        batch,
    };
    if args.rate == 0 {
        let stride = args.in_flight * batch;
        let mut workers = Vec::new();
        for w in 0..args.in_flight {
            let ctx = ctx.clone();
            workers.push(tokio::spawn(async move {
                let mut i = w * batch;
                while Instant::now() < deadline {
                    ctx.send(i).await;
                    i += stride;
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        return;
    }
    let sem = Arc::new(Semaphore::new(args.in_flight.max(1) * 4));
    let interval = Duration::from_secs_f64(batch as f64 / args.rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0u64.. {
        let intended = start + interval.mul_f64(i as f64);
        if intended.into_std() >= deadline {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let lag = tokio::time::Instant::now()
            .duration_since(intended)
            .as_micros() as u64;
        let _ = pacer_lag.lock().await.record(lag.max(1));
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            ctx.send(i as usize * batch).await;
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// What a publishing task needs.
#[derive(Clone)]
struct Ctx {
    http: reqwest::Client,
    targets: Arc<Vec<(String, String)>>,
    key: Arc<String>,
    published: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    base: Instant,
    batch: usize,
}

impl Ctx {
    /// Publishes `batch` events to the sessions starting at index `first`.
    async fn send(&self, first: usize) {
        let n = self.targets.len();
        let (target, sid) = &self.targets[first % n];
        if self.batch == 1 {
            let t = self.base.elapsed().as_micros() as u64;
            let body = json!({"type": "x.load", "data": {"t": t}});
            let r = self
                .http
                .post(format!("{target}/api/sessions/{sid}/events"))
                .bearer_auth(self.key.as_str())
                .json(&body)
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 202 => {
                    self.published.fetch_add(1, Ordering::Relaxed)
                }
                _ => self.failed.fetch_add(1, Ordering::Relaxed),
            };
            return;
        }
        let t = self.base.elapsed().as_micros() as u64;
        let events: Vec<Value> = (first..first + self.batch)
            .map(|i| json!({"session_id": self.targets[i % n].1, "type": "x.load", "data": {"t": t}}))
            .collect();
        let r = self
            .http
            .post(format!("{target}/api/events/batch"))
            .bearer_auth(self.key.as_str())
            .json(&json!({"events": events}))
            .send()
            .await;
        let Ok(r) = r else {
            self.failed.fetch_add(self.batch as u64, Ordering::Relaxed);
            return;
        };
        let Ok(v) = r.json::<Value>().await else {
            self.failed.fetch_add(self.batch as u64, Ordering::Relaxed);
            return;
        };
        for res in v["results"].as_array().into_iter().flatten() {
            if res.get("seq").is_some() {
                self.published.fetch_add(1, Ordering::Relaxed);
            } else {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn rss_kib(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        })
        .collect()
}

/// utime + stime of each process, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the command name (which is in parentheses).
                    let rest = &s[s.rfind(')')? + 2..];
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
                })
                .unwrap_or(0)
        })
        .collect()
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on Linux for every architecture this runs on.
    100.0
}

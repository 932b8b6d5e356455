//! A private Redis Cluster per test: three primaries with one or more replicas each, on free
//! loopback ports, created with `redis-cli --cluster create`; a test can kill a primary and
//! wait for a replica to take over.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server --cluster-enabled yes` process.
struct Node {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

/// A running cluster owned by one test.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

/// A port that is free, and whose cluster-bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn spawn_node(port: u16, dir: &std::path::Path) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    super::redis::die_with_parent(&mut cmd);
    cmd.spawn()
        .expect("redis-server (install it: apt-get install -y redis-server)")
}

/// Starts one node and waits until it answers PING. The port and its bus port were free
/// when picked, but another test may take one of them before the node binds it; the node
/// then exits, and this picks another port.
async fn start_node() -> Node {
    for _ in 0..5 {
        let port = free_cluster_port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_node(port, dir.path());
        let p = port.to_string();
        let start = Instant::now();
        loop {
            if cli(&["-p", &p, "ping"]).trim() == "PONG" {
                return Node {
                    child: Some(child),
                    port,
                    _dir: dir,
                };
            }
            let exited = child.try_wait().ok().flatten().is_some();
            if exited || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no cluster node answered PING in 5 tries (redis-server exits at once?)");
}

/// Runs `redis-cli` with `args` and returns its stdout.
pub fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools, installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Starts the nodes and forms a cluster of three primaries with `replicas` replicas each;
    /// returns once every slot is served and every replica is in sync.
    pub async fn start(replicas: usize) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            nodes.push(start_node().await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let replicas = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let created = cli(&args);
        assert!(created.contains("All 16384 slots covered"), "{created}");
        let c = Self { nodes };
        c.wait_healthy(Duration::from_secs(30)).await;
        c
    }

    /// `redis-cluster://` URL naming the first three nodes as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", seeds.join(","))
    }

    fn live_port(&self) -> String {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node")
            .port
            .to_string()
    }

    /// Port of the primary serving `key` now.
    pub fn primary_of(&self, key: &str) -> u16 {
        self.try_primary_of(key)
            .unwrap_or_else(|| panic!("no live primary serves {key}"))
    }

    /// Waits until a primary other than `old` serves `key` (a replica was promoted).
    pub async fn wait_failover(&self, key: &str, old: u16, within: Duration) {
        wait_for(within, || {
            self.try_primary_of(key).is_some_and(|p| p != old)
        })
        .await;
    }

    /// Port of the live primary serving `key`, if any.
    fn try_primary_of(&self, key: &str) -> Option<u16> {
        let port = self.live_port();
        let slot: u16 = cli(&["-p", &port, "cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        // `CLUSTER SHARDS` would be newer; `CLUSTER NODES` lines: id addr flags master ... slots
        for line in cli(&["-p", &port, "cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let addr = f[1].split('@').next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().ok();
            }
        }
        None
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every live node reports `cluster_state:ok`, every slot is served by a
    /// live primary, and every live replica's link to its primary is up.
    pub async fn wait_healthy(&self, within: Duration) {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port.to_string())
            .collect();
        wait_for(within, || {
            live.iter().all(|p| {
                let info = cli(&["-p", p, "cluster", "info"]);
                let repl = cli(&["-p", p, "info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        })
        .await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < within,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

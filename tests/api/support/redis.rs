//! A private `redis-server` per test, on a free loopback port, in its own temp directory,
//! that a test can kill and restart (keeping or dropping its data). Fails with a clear
//! message when `redis-server` is not installed; never skips.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running (or killed) Redis server owned by one test.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
}

impl RedisServer {
    /// Starts a server; with `aof`, every write is fsynced to an append-only file, so a
    /// killed server comes back with every acknowledged write.
    pub async fn start(aof: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            aof,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--dir", self.dir.path().to_str().unwrap()])
        .args(["--appendonly", if self.aof { "yes" } else { "no" }])
        .args(["--appendfsync", "always"])
        // Fine-grained approximate trimming, so MAXLEN ~ trims small test histories.
        .args(["--stream-node-max-entries", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): install it (apt-get install -y redis-server); \
                 .ci/run does this on a fresh machine"
            )
        });
        self.child = Some(child);
        let what = format!("redis-server on port {} answers PING", self.port);
        super::eventually(&what, Duration::from_secs(4), || async {
            self.ping().await.then_some(())
        })
        .await;
    }

    async fn ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port; `keep_data: false` wipes its directory first.
    pub async fn restart(&mut self, keep_data: bool) {
        self.kill();
        if !keep_data {
            for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes `cmd`'s process die with the test process (a timeout kill leaves no server behind).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A key prefix unique to one test.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Starts the real binary as one more instance of deployment `prefix` on `redis`, with
/// `extra` environment; returns the child (killed on drop) and its port.
pub fn spawn_instance_process(
    redis: &RedisServer,
    prefix: &str,
    extra: &[(&str, String)],
) -> (tokio::process::Child, u16) {
    spawn_instance_process_at(&redis.url(), prefix, extra)
}

/// [`spawn_instance_process`] on any Redis URL (a cluster's, say).
pub fn spawn_instance_process_at(
    redis_url: &str,
    prefix: &str,
    extra: &[(&str, String)],
) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_clear()
        .env("SWITCHBOARD_PORT", port.to_string())
        .env("SWITCHBOARD_REDIS_URL", redis_url)
        .env("SWITCHBOARD_REDIS_PREFIX", prefix)
        .env("SWITCHBOARD_SESSION_SECRET", super::SESSION_SECRET)
        .env("SWITCHBOARD_API_KEY", super::channel::API_KEY)
        // Tests bootstrap sessions anonymously from one IP; the access tests say otherwise.
        .env("SWITCHBOARD_ALLOW_ANONYMOUS", "true")
        .env("SWITCHBOARD_RATE_LIMIT_IP", "off")
        .env("SWITCHBOARD_RATE_LIMIT_USER", "off")
        // Each instance its own in-memory record unless the test names a database.
        .env("SWITCHBOARD_RECORD_SQLITE", ":memory:")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if std::env::var_os("SWITCHBOARD_TEST_CHILD_LOGS").is_some() {
        cmd.stdout(std::process::Stdio::inherit());
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    (cmd.spawn().unwrap(), port)
}

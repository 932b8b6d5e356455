//! A private PostgreSQL server per test (Debian's `postgresql` package), on a free loopback
//! port in its own temp directory, run as the `postgres` user (the server refuses root). A
//! test can freeze it (SIGSTOP to its whole process group: it hangs), thaw it, kill it and
//! start it again on the same data. Fails with a clear message when it is not installed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) Postgres owned by one test.
pub struct PostgresServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .filter(|d| d.join("postgres").exists())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
                 apt-get install -y postgresql; .ci/run does this on a fresh machine"
            )
        })
}

fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("id runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no {user} user: install Debian's postgresql package"))
    };
    (id("-u"), id("-g"))
}

impl PostgresServer {
    /// Initializes a data directory and starts the server.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = ids("postgres");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let bin = bin_dir();
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .args(["--no-sync"])
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Self {
            child: None,
            port,
            dir,
            bin,
            uid,
            gid,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.args(["-D", data.to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.path().display()),
            ])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=50", "-c", "shared_buffers=16MB"])
            .uid(self.uid)
            .gid(self.gid)
            .process_group(0)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        super::redis::die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("postgres starts"));
        let what = format!("postgres on port {} accepts connections", self.port);
        super::eventually(&what, Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        // Accepting TCP is not yet accepting queries: wait for pg_isready.
        super::eventually(&what, Duration::from_secs(15), || async {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(())
        })
        .await;
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn signal_group(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: a plain kill(2) of the process group this helper started.
            unsafe {
                libc::kill(-(c.id() as i32), sig);
            }
        }
    }

    /// Freezes every server process: connections hang, nothing is refused.
    pub fn freeze(&self) {
        self.signal_group(libc::SIGSTOP);
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        self.signal_group(libc::SIGCONT);
    }

    /// Kills every server process (SIGKILL): connections are refused until [`Self::restart`].
    pub fn kill(&mut self) {
        self.signal_group(libc::SIGCONT);
        self.signal_group(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // A killed postmaster leaves its pid file; the next start must not mistake it.
        let _ = std::fs::remove_file(self.dir.path().join("data/postmaster.pid"));
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
    }
}

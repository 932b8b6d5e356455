//! A loopback TCP proxy a test can cut: every open connection is dropped and new ones are
//! refused, so one instance loses its Redis while the others keep theirs (a partition).

use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to a target port until cut.
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the task drops them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        conns.spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { port, task }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and stops listening.
    pub fn cut(&self) {
        self.task.abort();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

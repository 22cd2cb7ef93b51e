//! Serving: the listener that can be told to refuse connections for a
//! while, [`serve`] over a given listener, and [`spawn`] for tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::state::{EmuState, RefuseRequest};

/// A TCP listener that closes its socket on a `refuse` fault and listens
/// again on the same address afterwards.
struct RefusingListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    refuse: mpsc::UnboundedReceiver<RefuseRequest>,
}

impl RefusingListener {
    async fn rebind(&mut self) {
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.inner = Some(l);
                    return;
                }
                Err(e) => {
                    tracing::warn!("cannot listen again on {}: {e}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl axum::serve::Listener for RefusingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some(listener) = &self.inner else {
                self.rebind().await;
                continue;
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => {
                        // Go sets TCP_NODELAY on every connection, so Ollama
                        // does; without it a stream's small chunks wait for
                        // the peer's delayed ACK (~40 ms behind a proxy).
                        let _ = conn.0.set_nodelay(true);
                        return conn;
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(req) = self.refuse.recv() => {
                    self.inner = None;
                    tracing::info!("refusing connections for {:?}", req.duration);
                    let _ = req.closed.send(());
                    tokio::time::sleep(req.duration).await;
                    self.rebind().await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

fn invalid(e: crate::config::ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Serves on an existing listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config.validate().map_err(invalid)?;
    let (state, refuse) = EmuState::new(config);
    serve_state(listener, state, refuse, shutdown).await
}

async fn serve_state(
    listener: TcpListener,
    state: Arc<EmuState>,
    refuse: mpsc::UnboundedReceiver<RefuseRequest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    state.loopback.store(
        addr.ip().is_loopback(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let listener = RefusingListener {
        inner: Some(listener),
        addr,
        refuse,
    };
    axum::serve(listener, crate::routes::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A running emulator. Stops on [`EmuHandle::shutdown`] or when dropped.
pub struct EmuHandle {
    addr: SocketAddr,
    state: Arc<EmuState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl EmuHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the emulator's state.
    pub fn state(&self) -> Arc<EmuState> {
        Arc::clone(&self.state)
    }

    /// Stops serving; open streams get a second to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for EmuHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `listen` (e.g. `127.0.0.1:0`) and serves in a background task.
pub async fn spawn(listen: SocketAddr, config: Config) -> io::Result<EmuHandle> {
    config.validate().map_err(invalid)?;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (state, refuse) = EmuState::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_state(listener, Arc::clone(&state), refuse, async {
        let _ = stopped.await;
    }));
    Ok(EmuHandle {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

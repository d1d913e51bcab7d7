//! The front door every service listens with: a listen queue sized for a crowd, a deadline on
//! a request's headers, and a cap on connections that answers at once.
//!
//! A flash sale's crowd arrives in one second. `axum::serve` takes a listener bound the usual
//! way, which asks the kernel for a queue of 128 (what std and mio ask for): a burst of
//! connects beyond it is dropped, and each dropped buyer's client waits a second before it
//! tries again. It also builds hyper without a timer, so a
//! client that sends half a request line and stalls holds its connection forever, and it caps
//! nothing. This module serves an axum [`Router`] on hyper's HTTP/1.1 connection itself,
//! with those three bounds (`docs/architecture.md`, "Security and the front door"):
//!
//! - [`FrontDoorArgs::listen`] asks for a listen queue of `LISTEN_BACKLOG` connections. The
//!   kernel silently caps it at `net.core.somaxconn` (4096 on Linux since 5.4).
//! - A connection has `HEADER_READ_TIMEOUT_MS` to send a request's headers, counted from
//!   when it opened or from the end of its previous response: one timer closes the stalled
//!   client and the idle keep-alive connection alike.
//! - At most `MAX_CONNECTIONS` connections are served at once; the next one is answered 503
//!   with a JSON body and closed, not queued, so a client beyond the cap learns it at once.
//!
//! HTTP/1.1 only: a browser speaks HTTP/2 to a TLS-terminating proxy, never in clear text
//! to a service, and HTTP/2's own idle and stream limits would be a second set to get right.

use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use clap::Args;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower::util::Oneshot;

/// How long a connection beyond the cap may take to receive its 503.
const TURN_AWAY_WITHIN: Duration = Duration::from_secs(1);

/// Connections beyond the cap being told so at once; past this many, one more is closed
/// without an answer, so a flood beyond the cap cannot take every file descriptor.
const TURNING_AWAY_AT_MOST: usize = 256;

/// `accept`'s errors for running out of file descriptors: the process's (EMFILE) or the
/// system's (ENFILE).
const OUT_OF_FILE_DESCRIPTORS: [i32; 2] = [24, 23];

/// How long the accept loop rests after an error that is not one connection's (out of file
/// descriptors, say), instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The answer to a connection beyond the cap, written before reading anything of it.
const AT_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 103\r\n\
\r\n\
{\"error\":\"unavailable\",\"message\":\"this server has as many connections as it serves; try again shortly\"}";

/// How a service meets its clients' connections (every binary flattens it).
#[derive(Args, Clone, Debug)]
pub struct FrontDoorArgs {
    /// Connections the kernel queues for the server before it accepts them (the listen
    /// backlog), sized for a crowd that connects in one burst; the kernel caps it at
    /// net.core.somaxconn.
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = NonZeroU32::new(4096).expect("4096 > 0"))]
    pub listen_backlog: NonZeroU32,

    /// Connections served at once; one more is answered 503 and closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = NonZeroU32::new(20_000).expect("20000 > 0"))]
    pub max_connections: NonZeroU32,

    /// How long a connection may take to send a request's headers, from when it opens or
    /// from its previous response; a stalled or idle connection is closed after it.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = NonZeroU64::new(10_000).expect("10000 > 0"))]
    pub header_read_timeout_ms: NonZeroU64,
}

impl FrontDoorArgs {
    /// A listener on `addr` with the configured listen queue.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted service binds again at once, while its old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(self.listen_backlog.get())
    }

    fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.get())
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, lets each
/// connection finish the response it is writing, and returns once every connection closed.
/// Requests carry the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    door: &FrontDoorArgs,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(door.max_connections.get() as usize));
    let turning_away = Arc::new(Semaphore::new(TURNING_AWAY_AT_MOST));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(door.header_read_timeout());
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if concerns_one_connection(&error) => continue,
                Err(error) => {
                    let out_of_descriptors = error
                        .raw_os_error()
                        .is_some_and(|code| OUT_OF_FILE_DESCRIPTORS.contains(&code));
                    if out_of_descriptors {
                        tracing::error!(%error, "out of file descriptors; the open-file limit (ulimit -n) must exceed MAX_CONNECTIONS; pausing");
                    } else {
                        tracing::error!(%error, "accepting a connection failed; pausing");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        let Ok(place) = Arc::clone(&connections).try_acquire_owned() else {
            if let Ok(turning) = Arc::clone(&turning_away).try_acquire_owned() {
                tokio::spawn(async move {
                    turn_away(stream).await;
                    drop(turning);
                });
            }
            continue;
        };
        // Answers are small: sent at once, not held back for a delayed acknowledgement.
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), on_behalf_of(peer, app.clone()));
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _place = place;
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    // New connects are refused from now on, so clients go to another instance at once
    // instead of waiting in a queue nobody will take from.
    drop(listener);
    // Every place back means every connection closed.
    let _all = connections
        .acquire_many(door.max_connections.get())
        .await
        .expect("the semaphore is never closed");
    Ok(())
}

/// `app` as hyper's service for the connection from `peer`.
fn on_behalf_of(
    peer: SocketAddr,
    app: Router,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = Oneshot<Router, hyper::Request<Incoming>>,
> {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    })
}

/// Answers a connection beyond the cap with 503 and closes it. The request is read and
/// dropped after the answer: closing with unread bytes would reset the connection, and a
/// reset can discard the answer before the client reads it.
async fn turn_away(mut stream: TcpStream) {
    let _ = tokio::time::timeout(TURN_AWAY_WITHIN, async {
        stream.write_all(AT_CAPACITY).await?;
        stream.shutdown().await?;
        let mut discard = [0u8; 1024];
        while stream.read(&mut discard).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// Whether an accept error concerns only the connection being accepted (the client gave
/// up), so the loop goes on at once.
fn concerns_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    fn door(max_connections: u32, header_read_timeout_ms: u64) -> FrontDoorArgs {
        FrontDoorArgs {
            listen_backlog: NonZeroU32::new(4096).unwrap(),
            max_connections: NonZeroU32::new(max_connections).unwrap(),
            header_read_timeout_ms: NonZeroU64::new(header_read_timeout_ms).unwrap(),
        }
    }

    /// Serves a hello-world through `door` on a free port until the returned token is cancelled.
    fn hello(door: FrontDoorArgs) -> (SocketAddr, CancellationToken) {
        let listener = door.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "hello" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        );
        let stop = CancellationToken::new();
        let serving = stop.clone();
        tokio::spawn(async move { serve(listener, app, &door, serving).await });
        (addr, stop)
    }

    /// Everything the server sends until it closes the connection; fails the test if it does
    /// not close within `patience`.
    async fn until_closed(stream: &mut TcpStream, patience: Duration) -> String {
        let mut received = Vec::new();
        tokio::time::timeout(patience, stream.read_to_end(&mut received))
            .await
            .expect("the server closed the connection")
            .expect("reading the answer");
        String::from_utf8(received).unwrap()
    }

    #[tokio::test]
    async fn a_burst_of_connects_waits_in_the_listen_queue_instead_of_being_dropped() {
        // Nobody accepts: every connect of the burst must complete its handshake from the
        // queue. With the usual queue of 128 the rest would be dropped and retried a second
        // later (a SYN's first retransmission), which the deadline below is under. (The
        // kernel caps the queue at net.core.somaxconn, 4096 on Linux since 5.4.)
        let listener = door(1, 1000)
            .listen("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..600).map(|_| TcpStream::connect(addr));
        let connected = tokio::time::timeout(
            Duration::from_millis(900),
            futures::future::join_all(connects),
        )
        .await
        .expect("every connect of the burst completed before a SYN would be retried");
        assert!(connected.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn connections_that_never_finish_their_headers_are_closed() {
        let (addr, stop) = hello(door(1000, 300));
        let mut stalled = Vec::new();
        for _ in 0..200 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HT").await.unwrap();
            stalled.push(stream);
        }
        for stream in &mut stalled {
            until_closed(stream, Duration::from_secs(10)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
        let (addr, stop) = hello(door(1000, 300));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_connection_beyond_the_cap_is_answered_503_at_once() {
        let (addr, stop) = hello(door(2, 10_000));
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HT").await.unwrap();
            held.push(stream);
        }
        // The two places are taken once the server accepted both; one more is turned away.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut beyond = TcpStream::connect(addr).await.unwrap();
        beyond
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut beyond, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let body: serde_json::Value =
            serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"], "unavailable");
        // A place that frees up serves again, once the server saw the client go.
        drop(held.pop());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut next = TcpStream::connect(addr).await.unwrap();
            next.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let answer = until_closed(&mut next, Duration::from_secs(5)).await;
            if answer.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn once_shutdown_begins_new_connects_are_refused_while_answers_finish() {
        let (addr, stop) = hello(door(1000, 10_000));
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = TcpStream::connect(addr).await;
        assert_eq!(
            refused.map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused,
            "a client learns at once that this instance no longer serves"
        );
        let answer = until_closed(&mut slow, Duration::from_secs(10)).await;
        assert!(
            answer.ends_with("slow"),
            "the answer under way finished: {answer}"
        );
    }

    #[test]
    fn the_answer_beyond_the_cap_has_the_length_it_declares() {
        let text = std::str::from_utf8(AT_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "unavailable");
    }
}

//! A TCP proxy in front of the services' Redis, for the tests that must see or disturb what a
//! gateway says to Redis: it counts the commands sent through it (each once it has fully
//! arrived) and can hold back the next reply, as a network that delivered a request and then
//! stalled (the script runs; its answer is late).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub struct RedisProxy {
    address: std::net::SocketAddr,
    commands: Arc<AtomicU64>,
    /// How long the next reply is held back, once armed.
    stall: Arc<Mutex<Option<Duration>>>,
}

impl RedisProxy {
    pub async fn start() -> Self {
        let upstream = shared::testing::services_redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr");
        let (commands, stall) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
        let (counted, armed) = (Arc::clone(&commands), Arc::clone(&stall));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("Redis is reachable");
                let (client_reads, client_writes) = client.into_split();
                let (server_reads, server_writes) = server.into_split();
                tokio::spawn(requests(client_reads, server_writes, Arc::clone(&counted)));
                tokio::spawn(replies(server_reads, client_writes, Arc::clone(&armed)));
            }
        });
        Self {
            address,
            commands,
            stall,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// The commands sent through the proxy so far.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::SeqCst)
    }

    /// Holds the next reply back for `stall` before passing it on.
    pub fn stall_next_reply(&self, stall: Duration) {
        *self.stall.lock().expect("never poisoned") = Some(stall);
    }
}

/// Passes the client's bytes on, counting each command once all of it has arrived.
async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, counted: Arc<AtomicU64>) {
    let (mut chunk, mut pending) = (vec![0; 64 * 1024], Vec::new());
    while let Ok(read) = from.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..read]);
        counted.fetch_add(take_commands(&mut pending), Ordering::SeqCst);
        if to.write_all(&chunk[..read]).await.is_err() {
            break;
        }
    }
}

/// Passes Redis's replies on, holding one back when armed.
async fn replies(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    armed: Arc<Mutex<Option<Duration>>>,
) {
    let mut chunk = vec![0; 64 * 1024];
    while let Ok(read) = from.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        let stall = armed.lock().expect("never poisoned").take();
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        if to.write_all(&chunk[..read]).await.is_err() {
            break;
        }
    }
}

/// Removes the whole commands at the head of `pending` (RESP arrays of bulk strings, the only
/// form a client library sends) and returns how many there were.
fn take_commands(pending: &mut Vec<u8>) -> u64 {
    let mut commands = 0;
    while let Some(length) = command_length(pending) {
        pending.drain(..length);
        commands += 1;
    }
    commands
}

/// The length of the command at the head of `bytes`, once all of it has arrived.
fn command_length(bytes: &[u8]) -> Option<usize> {
    let (arguments, mut at) = header(bytes, b'*')?;
    for _ in 0..arguments {
        let (length, body) = header(&bytes[at..], b'$')?;
        at += body + length + 2;
        if bytes.len() < at {
            return None;
        }
    }
    Some(at)
}

/// A `<kind><number>\r\n` line at the head of `bytes`: the number and the line's length.
fn header(bytes: &[u8], kind: u8) -> Option<(usize, usize)> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    assert_eq!(bytes[0], kind, "a RESP command");
    let number = std::str::from_utf8(&bytes[1..end]).ok()?.parse().ok()?;
    Some((number, end + 2))
}

#[test]
fn commands_are_counted_once_they_have_fully_arrived() {
    let ping_and_get = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    let mut pending = ping_and_get[..20].to_vec();
    assert_eq!(take_commands(&mut pending), 1, "PING whole, GET cut short");
    pending.extend_from_slice(&ping_and_get[20..]);
    assert_eq!(take_commands(&mut pending), 1);
    assert!(pending.is_empty());
}

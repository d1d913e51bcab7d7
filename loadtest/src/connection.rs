//! The load generator's hot path: requests written ahead as bytes, sent over keep-alive
//! HTTP/1.1 connections that each worker owns, answers parsed in place.
//!
//! A load generator that spends more CPU per request than the server it measures reports its
//! own weight, not the server's. So, as wrk does, a request costs a write and a read and little
//! else: [`Prepared`] formats each target's request line and `Host`, and each buyer's
//! `Authorization`, before the clock starts; no pool, no task per connection, no lock, no
//! header map. Only what the gateway and the benchmark's hello-world send is understood:
//! answers with a `Content-Length` (anything else closes the connection and counts as no
//! answer).

use std::io;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An attempt without an answer within this time counts as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers an answer may carry; the gateway sends fewer than ten.
const MAX_HEADERS: usize = 32;

/// One server of the run: where to connect, and the head of every request sent to it.
#[derive(Debug)]
struct Target {
    address: String,
    /// `POST /path HTTP/1.1`, `Host`, `Content-Length: 0`.
    head: Vec<u8>,
}

/// Everything a run's requests are made of, written before the clock starts.
#[derive(Debug)]
pub struct Prepared {
    targets: Vec<Target>,
    /// `Authorization: Bearer <token>` per user, by user index; empty when requests carry none.
    authorizations: Vec<Vec<u8>>,
}

impl Prepared {
    /// `method path` against each base URL of `bases` (plain `http://host:port` only), with
    /// each user's token as a bearer credential (no tokens: no `Authorization`).
    pub fn new(
        method: &str,
        bases: &[String],
        path: &str,
        tokens: &[String],
    ) -> anyhow::Result<Self> {
        let targets = bases
            .iter()
            .map(|base| {
                let authority = base
                    .strip_prefix("http://")
                    .with_context(|| format!("the load generator speaks plain HTTP, not {base}"))?
                    .trim_end_matches('/');
                anyhow::ensure!(
                    !authority.is_empty() && !authority.contains('/'),
                    "a base URL is scheme, host and port only, not {base}"
                );
                let address = if authority.contains(':') {
                    authority.to_owned()
                } else {
                    format!("{authority}:80")
                };
                let head = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n"
                );
                Ok(Target {
                    address,
                    head: head.into_bytes(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!targets.is_empty(), "no URL to send requests to");
        let authorizations = tokens
            .iter()
            .map(|token| format!("Authorization: Bearer {token}\r\n").into_bytes())
            .collect();
        Ok(Self {
            targets,
            authorizations,
        })
    }

    /// A request to any plain-HTTP URL, with no credential (the benchmark's HTTP ceiling).
    pub fn to_url(method: &str, url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").with_context(|| {
            let url = shared::redact::url(url);
            format!("the load generator speaks plain HTTP, not {url}")
        })?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
        Self::new(method, &[format!("http://{authority}")], path, &[])
    }

    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Writes `user`'s request to `target` into `out`.
    fn write(&self, target: usize, user: usize, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.targets[target].head);
        if let Some(authorization) = self.authorizations.get(user) {
            out.extend_from_slice(authorization);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// An answer: its status, and where its body lies in the connection's buffer.
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// A worker's connections, one per target, opened on first use and again after a failure,
/// with the buffers every request reuses.
pub struct Connections<'a> {
    prepared: &'a Prepared,
    open: Vec<Option<TcpStream>>,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl<'a> Connections<'a> {
    pub fn new(prepared: &'a Prepared) -> Self {
        Self {
            prepared,
            open: prepared.targets.iter().map(|_| None).collect(),
            request: Vec::with_capacity(1024),
            answer: Vec::with_capacity(4096),
        }
    }

    /// Sends `user`'s request to `target`; its answer, or `None` when none came (refused,
    /// reset, timed out, not understood). When a reused connection turns out closed (the
    /// server ended its keep-alive, or restarted), the request is sent once more on a new one.
    /// Should the server have taken it before closing, the second copy is answered as a
    /// repeat (a purchase: 409 `already_purchased` naming the order), so no order is lost
    /// from the count or counted twice.
    pub async fn send(&mut self, target: usize, user: usize) -> Option<Answer<'_>> {
        self.prepared.write(target, user, &mut self.request);
        let exchanged = tokio::time::timeout(ANSWER_TIMEOUT, async {
            let reused = self.open[target].is_some();
            match self.exchange(target).await {
                Err(error) if reused && closed_by_server(&error) => self.exchange(target).await,
                other => other,
            }
        })
        .await;
        if let Ok(Ok(Exchanged { status, body, keep })) = exchanged {
            if !keep {
                self.open[target] = None;
            }
            Some(Answer {
                status,
                body: &self.answer[body],
            })
        } else {
            self.open[target] = None;
            None
        }
    }

    async fn exchange(&mut self, target: usize) -> io::Result<Exchanged> {
        let slot = &mut self.open[target];
        let stream = match slot {
            Some(stream) => stream,
            None => slot.insert(connect(&self.prepared.targets[target].address).await?),
        };
        let outcome = round_trip(stream, &self.request, &mut self.answer).await;
        if outcome.is_err() {
            self.open[target] = None;
        }
        outcome
    }
}

/// The parts of an answer read from a connection.
struct Exchanged {
    status: u16,
    body: std::ops::Range<usize>,
    /// Whether the connection may carry the next request.
    keep: bool,
}

async fn connect(address: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a failure means the server had closed the connection (or closed it on reading).
fn closed_by_server(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

async fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    answer: &mut Vec<u8>,
) -> io::Result<Exchanged> {
    stream.write_all(request).await?;
    read_answer(stream, answer).await
}

/// Reads one answer into `buffer`: the head, then `Content-Length` bytes of body.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Exchanged> {
    buffer.clear();
    loop {
        if stream.read_buf(buffer).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_length = match response.parse(buffer) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => {
                buffer.reserve(4096);
                continue;
            }
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        };
        let status = response.code.unwrap_or_default();
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| header.value)
        };
        let body_length: usize = header("content-length")
            .and_then(|value| std::str::from_utf8(value).ok()?.trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))?;
        let keep = !header("connection").is_some_and(|value| value.eq_ignore_ascii_case(b"close"));
        let end = head_length + body_length;
        while buffer.len() < end {
            buffer.reserve(end - buffer.len());
            if stream.read_buf(buffer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        return Ok(Exchanged {
            status,
            body: head_length..end,
            keep,
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that reads requests (head only, they have no body) and sends `answers[i]` to
    /// the i-th, counting connections; it closes a connection after each answer in `closes`.
    async fn server(
        answers: Vec<&'static str>,
        closes: Vec<usize>,
    ) -> (String, tokio::task::JoinHandle<(usize, Vec<String>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address").to_string();
        let serving = tokio::spawn(async move {
            let (mut connections, mut heads, mut next) = (0, Vec::new(), 0);
            while next < answers.len() {
                let (stream, _) = listener.accept().await.expect("a connection");
                connections += 1;
                let mut stream = BufReader::new(stream);
                while next < answers.len() {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.expect("a line") == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    heads.push(head);
                    stream
                        .get_mut()
                        .write_all(answers[next].as_bytes())
                        .await
                        .expect("written");
                    next += 1;
                    if closes.contains(&(next - 1)) {
                        break;
                    }
                }
            }
            (connections, heads)
        });
        (format!("http://{address}"), serving)
    }

    const GONE: &str = "HTTP/1.1 410 Gone\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"error\":\"sold_out\"}";

    #[tokio::test]
    async fn answers_are_read_by_length_on_one_connection_with_each_buyers_token() {
        let (base, serving) = server(vec![GONE, GONE], vec![]).await;
        let tokens = ["t-0".to_owned(), "t-1".to_owned()];
        let prepared =
            Prepared::new("POST", &[base], "/api/v1/sales/s/orders", &tokens).expect("prepared");
        let mut connections = Connections::new(&prepared);
        for user in 0..2 {
            let answer = connections.send(0, user).await.expect("an answer");
            assert_eq!(
                (answer.status, answer.body),
                (410, &br#"{"error":"sold_out"}"#[..])
            );
        }
        let (opened, heads) = serving.await.expect("the server ends");
        assert_eq!(opened, 1, "keep-alive: one connection for both");
        assert!(
            heads[0].starts_with("POST /api/v1/sales/s/orders HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
        assert!(
            heads[0].contains("Authorization: Bearer t-0\r\n"),
            "{}",
            heads[0]
        );
        assert!(
            heads[1].contains("Authorization: Bearer t-1\r\n"),
            "{}",
            heads[1]
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_opened_again_and_an_answer_without_length_is_none() {
        let no_length = "HTTP/1.1 200 OK\r\n\r\n";
        let (base, serving) = server(vec![GONE, GONE, no_length], vec![0]).await;
        let prepared = Prepared::to_url("POST", &format!("{base}/x")).expect("prepared");
        let mut connections = Connections::new(&prepared);
        assert_eq!(connections.send(0, 0).await.map(|a| a.status), Some(410));
        // The server closed after its first answer: the next request goes on a new connection.
        assert_eq!(connections.send(0, 0).await.map(|a| a.status), Some(410));
        assert!(
            connections.send(0, 0).await.is_none(),
            "no Content-Length: not understood"
        );
        let (opened, _) = serving.await.expect("the server ends");
        assert_eq!(opened, 2);
    }

    #[test]
    fn only_plain_http_base_urls_are_taken() {
        assert!(Prepared::new("POST", &["https://h:1".into()], "/", &[]).is_err());
        assert!(Prepared::new("POST", &["http://h:1/path".into()], "/", &[]).is_err());
        let prepared = Prepared::new("GET", &["http://h".into()], "/", &[]).expect("prepared");
        assert_eq!(prepared.targets[0].address, "h:80");
    }
}

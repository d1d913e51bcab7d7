//! A Server-Sent Events client for the tests: reads a stream's body frame by frame, as
//! `EventSource` does (a frame is a block of lines ended by a blank line; a line starting with
//! `:` is a comment, which the gateway sends as its heartbeat).

use std::time::Duration;

use serde_json::Value;

/// How long a test waits for the next event.
pub const WAIT: Duration = Duration::from_secs(30);

/// A stream as a client reads it.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// One frame as it came: its fields by name, and its comment lines.
#[derive(Debug, Default)]
pub struct Frame {
    pub event: Option<String>,
    pub id: Option<String>,
    /// The `data:` lines, one entry each.
    pub data: Vec<String>,
    pub comments: usize,
    /// Any line that is none of the above.
    pub other: Vec<String>,
}

/// One event: its name, id and JSON data.
#[derive(Debug)]
pub struct Received {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl EventStream {
    /// The stream of a response that must be one: 200 and `text/event-stream`.
    pub fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "{}", response.url());
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next frame within [`WAIT`], heartbeats included; `None` when the stream ended.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse(std::str::from_utf8(&block).expect("UTF-8 frames")));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("a frame within the wait")
                .expect("the stream reads")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event within [`WAIT`], skipping heartbeats; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Received> {
        // One deadline for the event, not per frame: heartbeats alone must not keep it waiting.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.next_frame())
                .await
                .expect("an event within the wait")?;
            if frame.data.is_empty() {
                continue;
            }
            return Some(Received {
                event: frame.event.unwrap_or_else(|| "message".into()),
                id: frame.id,
                data: serde_json::from_str(&frame.data.concat()).expect("JSON data"),
            });
        }
    }
}

fn parse(block: &str) -> Frame {
    let mut frame = Frame::default();
    for line in block.lines().filter(|line| !line.is_empty()) {
        if line.starts_with(':') {
            frame.comments += 1;
        } else if let Some(value) = line.strip_prefix("event:") {
            frame.event = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("id:") {
            frame.id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            frame.data.push(value.trim().to_owned());
        } else {
            frame.other.push(line.to_owned());
        }
    }
    frame
}

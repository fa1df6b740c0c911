//! What the fuzzer found, sent to the real server: malformed Postgres
//! messages that made pgwire 0.41's decoder panic (lengths under 4, bodies
//! shorter than their fields). Each is sent on a raw socket, before and
//! after startup; the connection must end with a FATAL 08P01 (or, for
//! inputs a Postgres server would also just wait on or drop, a clean
//! close), and a second connection must still run `select 1`: the server
//! is unharmed. The frame guard (`server/src/pg/frame_guard.rs`) is what
//! answers them; without it the connection is cut mid-panic with no error.
//!
//! Besides the hand-written cases below, every file in
//! `fuzz/regressions/pgwire/` (crash inputs of the `pgwire` fuzz target,
//! as `fuzz/run.sh` found them) is replayed the way the target reads it:
//! an odd first byte means "after startup".

mod common;

use std::time::Duration;

use common::WeirProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: a reply on a loaded machine; never an assertion on time.
const DEADLINE: Duration = Duration::from_secs(60);

/// How a connection sent bad bytes ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// An ErrorResponse with this SQLSTATE, then the close.
    Error(String),
    /// Closed with no error.
    Closed,
    /// Still open at the deadline, waiting for more bytes (what Postgres
    /// does with a message that is not complete yet).
    Waiting,
}

fn startup_packet() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for s in ["user", "weir", "database", "weir", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut packet = (4 + body.len() as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

fn message(kind: u8, length: i32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&length.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Read backend messages until the close or the deadline: the first
/// ErrorResponse's SQLSTATE, or how it ended. `until_ready` stops at the
/// first ReadyForQuery instead (startup done).
async fn read_until_end(socket: &mut TcpStream, until_ready: bool) -> Ending {
    let mut buf = Vec::new();
    let read = async {
        loop {
            // Whole messages in `buf`.
            while buf.len() >= 5 {
                let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() < 1 + len {
                    break;
                }
                let kind = buf[0];
                let body: Vec<u8> = buf.drain(..1 + len).skip(5).collect();
                if kind == b'E' {
                    let code = body
                        .split(|b| *b == 0)
                        .find(|f| f.first() == Some(&b'C'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                        .unwrap_or_default();
                    return Ending::Error(code);
                }
                if kind == b'Z' && until_ready {
                    return Ending::Waiting;
                }
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ending::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or(Ending::Waiting)
}

/// Connect, start up when `after_startup`, send `bytes`, and see how it ends.
async fn send(server: &WeirProcess, after_startup: bool, bytes: &[u8]) -> Ending {
    let mut socket = TcpStream::connect(("127.0.0.1", server.pg_port))
        .await
        .expect("connect");
    if after_startup {
        socket.write_all(&startup_packet()).await.expect("startup");
        assert_eq!(
            read_until_end(&mut socket, true).await,
            Ending::Waiting,
            "startup did not reach ReadyForQuery"
        );
    }
    // The server may close before it read everything: a failed write is
    // one way to end.
    if socket.write_all(bytes).await.is_err() {
        return Ending::Closed;
    }
    read_until_end(&mut socket, false).await
}

/// The server still answers a real client.
async fn still_serves(server: &mut WeirProcess, what: &str) {
    assert!(!server.exited(), "the server exited after {what}");
    let client = common::connect(server).await;
    let row = client
        .query_one("select 1::int4", &[])
        .await
        .unwrap_or_else(|e| panic!("select 1 after {what}: {e}"));
    assert_eq!(row.get::<_, i32>(0), 1, "after {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_end_their_connection_with_08p01_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = WeirProcess::start(dir.path());
    let cases: Vec<(&str, bool, Vec<u8>)> = vec![
        // Startup packets shorter than their own header.
        (
            "a startup packet of length 0",
            false,
            0i32.to_be_bytes().to_vec(),
        ),
        (
            "a startup packet of length 4",
            false,
            [4i32.to_be_bytes(), [0; 4]].concat(),
        ),
        (
            "a startup packet of length -1",
            false,
            (-1i32).to_be_bytes().to_vec(),
        ),
        (
            "a startup packet of 1 MB",
            false,
            (1i32 << 20).to_be_bytes().to_vec(),
        ),
        // pgwire's `len - 4` (messages/copy.rs, startup.rs) on lengths under 4.
        ("a CopyData of length 0", true, message(b'd', 0, b"")),
        (
            "a password message of length 2",
            true,
            message(b'p', 2, b"xx"),
        ),
        ("a Query of length 3", true, message(b'Q', 3, b"")),
        ("a Query of length -1", true, message(b'Q', -1, b"")),
        // Bodies shorter than their fields.
        (
            "a Bind cut after its names",
            true,
            message(b'B', 6, b"\0\0"),
        ),
        (
            "a Parse with a parameter count and no types",
            true,
            message(b'P', 8, b"\0\0\0\x05"),
        ),
        (
            "an Execute with no row limit",
            true,
            message(b'E', 5, b"\0"),
        ),
        ("a Describe with no target", true, message(b'D', 4, b"")),
        ("a Close with no target", true, message(b'C', 4, b"")),
    ];
    for (what, after_startup, bytes) in &cases {
        let ending = send(&server, *after_startup, bytes).await;
        assert_eq!(ending, Ending::Error("08P01".into()), "{what}");
        still_serves(&mut server, what).await;
    }

    // The fuzzer's own finds, replayed as its target reads them.
    let found = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/pgwire");
    let mut files: Vec<_> = std::fs::read_dir(&found)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in &files {
        let bytes = std::fs::read(file).expect("read a crash input");
        let after_startup = bytes.first().is_some_and(|b| b & 1 == 1);
        let what = format!("{}", file.display());
        let ending = send(&server, after_startup, &bytes).await;
        // A crash input may hold a valid message before the bad one (its
        // answer is then another error, or a wait for more): what matters
        // is no cut without a word, and a server unharmed.
        assert!(
            matches!(ending, Ending::Error(_) | Ending::Waiting),
            "{what}: {ending:?}"
        );
        still_serves(&mut server, &what).await;
    }
    eprintln!(
        "{} hand-written cases and {} fuzzer finds replayed",
        cases.len(),
        files.len()
    );
}

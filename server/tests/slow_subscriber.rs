//! A `SUBSCRIBE` client that stops reading, under
//! `subscribe_slow_client = 'block'`: the view's job waits for it (its row
//! count stops growing while the stream could go on), the server's memory
//! stays flat meanwhile, and closing the client releases the job. The
//! client is a raw socket that sends its queries and then never reads, so
//! nothing on the client side buffers for it. The policy is the server's,
//! from its config file's `subscribe_slow_client` key: the subscriber's new
//! session has it without a `SET`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::WeirProcess;

/// One frontend message: tag, length, body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Read until ReadyForQuery ('Z'), failing on an ErrorResponse ('E'); the
/// first column of each DataRow ('D') on the way.
fn until_ready(socket: &mut TcpStream) -> Vec<String> {
    let mut values = Vec::new();
    loop {
        let mut head = [0u8; 5];
        socket.read_exact(&mut head).expect("message head");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        socket.read_exact(&mut body).expect("message body");
        assert_ne!(head[0], b'E', "error: {}", String::from_utf8_lossy(&body));
        if head[0] == b'D' {
            // Column count (2 bytes), then the first value's length and bytes.
            let value_len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
            values.push(String::from_utf8_lossy(&body[6..6 + value_len]).into_owned());
        }
        if head[0] == b'Z' {
            return values;
        }
    }
}

/// A connection (trust) that subscribes to `view` with the server's
/// policy, which must be `block`, and will never read again.
fn silent_subscriber(port: u16, view: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608i32.to_be_bytes());
    startup.extend_from_slice(b"user\0weir\0database\0weir\0\0");
    let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    socket.write_all(&packet).expect("startup");
    until_ready(&mut socket);
    socket
        .write_all(&message(b'Q', b"SHOW subscribe_slow_client\0"))
        .expect("show");
    assert_eq!(
        until_ready(&mut socket),
        vec!["block".to_string()],
        "a new session has the server's policy"
    );
    socket
        .write_all(&message(b'Q', format!("SUBSCRIBE TO {view}\0").as_bytes()))
        .expect("subscribe");
    socket
}

/// The RSS (kB) of the weir process serving `data_dir`.
fn rss_kb(data_dir: &std::path::Path) -> u64 {
    let needle = data_dir.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let path = entry.expect("entry").path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(" serve ") && cmdline.contains(&needle) {
            let status = std::fs::read_to_string(path.join("status")).expect("status");
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .expect("VmRSS");
        }
    }
    panic!("no weir process for {needle}");
}

async fn policy(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SHOW subscribe_slow_client", &[])
        .await
        .expect("show")
        .get(0)
}

async fn view_rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM fast", &[])
        .await
        .expect("count")
        .get(0)
}

/// Poll until two counts a second apart are equal (the job is held), for
/// up to two minutes; the count it settled at.
async fn settled(client: &tokio_postgres::Client) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last = view_rows(client).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = view_rows(client).await;
        if now == last {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the view's job never waited for the silent subscriber (at {now} rows)"
        );
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_the_job_and_not_the_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The server-wide default, from the config file.
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "subscribe_slow_client = \"block\"\n").expect("config");
    let config = config.to_string_lossy().to_string();
    let server = WeirProcess::start_with(&data, &["--config", &config], &[]);
    let client = common::connect(&server).await;
    // A session's SET wins over it, and SET .. TO DEFAULT goes back to it.
    assert_eq!(policy(&client).await, "block");
    client
        .batch_execute("SET subscribe_slow_client = 'disconnect'")
        .await
        .expect("set");
    assert_eq!(policy(&client).await, "disconnect");
    client
        .batch_execute("SET subscribe_slow_client TO DEFAULT")
        .await
        .expect("set to default");
    assert_eq!(policy(&client).await, "block");
    client
        .batch_execute(
            "CREATE STREAM ev (id BIGINT, pad TEXT) WITH (connector = 'datagen', \
               rows = '100000000', rate = '200000');
             CREATE MATERIALIZED VIEW fast AS SELECT id, pad FROM ev",
        )
        .await
        .expect("pipeline");
    let subscriber = silent_subscriber(server.pg_port, "fast");

    // Held: the view stops growing though the stream could go on.
    let held_at = settled(&client).await;
    let rss_held = rss_kb(&data);
    // And stays held, with flat memory, while time passes.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(view_rows(&client).await, held_at, "the job stays held");
    }
    let rss_later = rss_kb(&data);
    eprintln!("slow_subscriber: held at {held_at} rows, RSS {rss_held} kB then {rss_later} kB");
    assert!(
        rss_later < rss_held + 64 * 1024,
        "RSS grew from {rss_held} kB to {rss_later} kB while the job was held"
    );

    // The client goes away: the job goes on.
    drop(subscriber);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while view_rows(&client).await <= held_at {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closing the subscriber did not release the job"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The setting is in `weir serve --help` with its variable, as the CLI
/// contract has every config key.
#[test]
fn serve_help_lists_the_slow_client_policy() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--help"])
        .output()
        .expect("weir serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--subscribe-slow-client") && help.contains("WEIR_SUBSCRIBE_SLOW_CLIENT"),
        "{help}"
    );
}

//! Failures are contained: a failed job affects its own view alone, and a
//! second server cannot take a data directory another one is using.

mod common;

use std::process::Command;

use common::WeirProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = WeirProcess::start(dir.path());
    let client = common::connect(&first).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')")
        .await
        .expect("write through the first server");

    let second = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--workers", "1", "--print-addrs", "--log", "warn"])
        .current_dir(common::sql_tests_dir())
        .output()
        .expect("run a second weir");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second server exited with {}; stderr: {stderr}",
        second.status
    );
    assert!(
        second.stdout.is_empty(),
        "the second server listened: {}",
        String::from_utf8_lossy(&second.stdout)
    );
    let shown = dir.path().display().to_string();
    assert!(
        stderr.contains(&shown) && stderr.contains("in use by another weir process"),
        "the message must name the directory and say why: {stderr}"
    );

    // The first one keeps serving, its data untouched.
    client
        .batch_execute("INSERT INTO t VALUES (2, 'b')")
        .await
        .expect("the first server still writes");
    assert_eq!(
        common::sorted_rows(&client, "SELECT id, v FROM t").await,
        vec!["1|a", "2|b"]
    );
}

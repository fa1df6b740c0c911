//! The web console in a real browser: `console/console_test.py` drives
//! headless Chromium (Debian's `/usr/bin/chromium`) with Playwright against
//! the real binary, running a windowed view over the `nexmark` generator.
//! Skipped, saying so, when Chromium or Playwright is missing outside CI;
//! under CI (`CI=true`) it must run. Screenshots: `target/console-screenshots/`.

mod common;

use std::path::Path;
use std::process::Command;

use common::WeirProcess;

const TOKEN: &str = "console-test-token";

fn browser_present() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if chromium && playwright {
        return true;
    }
    assert!(
        !common::required(),
        "the console test needs /usr/bin/chromium and Playwright for Python under CI (.ci/setup installs both)"
    );
    eprintln!(
        "skipped: the console test needs /usr/bin/chromium ({}) and Playwright for Python ({})",
        if chromium { "found" } else { "missing" },
        if playwright { "found" } else { "missing" }
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_drives_a_running_job() {
    if !browser_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(
        dir.path(),
        &["--checkpoint-interval", "500ms"],
        &[("WEIR_API_TOKEN", TOKEN)],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 2000, seed = 3);
             CREATE MATERIALIZED VIEW per_second AS
               SELECT window_start, count(*) AS c
               FROM TUMBLE(bid, date_time, INTERVAL '1 second')
               GROUP BY window_start
               EMIT ON WINDOW CLOSE",
        )
        .await
        .expect("a windowed view over the generator");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = manifest.join("../target/console-screenshots");
    let script = manifest.join("tests/console/console_test.py");
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .args([base.as_str(), TOKEN])
            .arg(&shots)
            .output()
            .expect("run the console test")
    })
    .await
    .expect("the console test's thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("console test passed"), "{stdout}\n{stderr}");
}

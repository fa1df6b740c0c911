//! TLS through the real binary: a CA and a server certificate made with the
//! `openssl` command for each test, psql with `sslmode=verify-full` against
//! that CA, `tls_required` refusing a plain connection with 28000, and
//! `/healthz` over HTTPS with the same certificate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::WeirProcess;

/// A test CA and a certificate for `localhost` / 127.0.0.1 signed by it.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_certs(dir: &Path) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Weir test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

fn tls_server(dir: &Path, certs: &Certs, extra: &[&str]) -> WeirProcess {
    let mut args = vec![
        "--tls-cert",
        certs.cert.to_str().expect("utf8"),
        "--tls-key",
        certs.key.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    WeirProcess::start_with(&dir.join("data"), &args, &[])
}

fn psql(conninfo: &str, command: &str) -> (bool, String) {
    let output = Command::new("psql")
        .args(["-X", "-At", conninfo, "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn psql_verify_full_against_a_test_ca_and_https_healthz() {
    if !common::have("psql", &["--version"]) || !common::have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(dir.path());
    let server = tls_server(dir.path(), &certs, &[]);
    let conninfo = format!(
        "sslmode=verify-full sslrootcert={} host=localhost port={} user=weir dbname=weir",
        certs.ca.display(),
        server.pg_port
    );
    let (ok, out) = psql(&conninfo, "\\conninfo");
    assert!(ok, "{out}");
    assert!(out.contains("SSL connection"), "{out}");
    let (ok, out) = psql(&conninfo, "SELECT 40 + 2");
    assert!(ok && out.trim() == "42", "{out}");

    // A CA that did not sign the certificate is refused by the client.
    let other = tempfile::tempdir().expect("tempdir");
    let other_certs = make_certs(other.path());
    let (ok, out) = psql(
        &format!(
            "sslmode=verify-full sslrootcert={} host=localhost port={} user=weir dbname=weir",
            other_certs.ca.display(),
            server.pg_port
        ),
        "SELECT 1",
    );
    assert!(!ok, "an unknown CA was accepted: {out}");

    // Without tls_required, plain connections still work.
    let (ok, out) = psql(
        &format!(
            "sslmode=disable host=127.0.0.1 port={} user=weir dbname=weir",
            server.pg_port
        ),
        "SELECT 1",
    );
    assert!(ok, "{out}");

    // HTTPS on the HTTP port, with the same certificate, verified by curl.
    if common::have("curl", &["--version"]) {
        let port = server.http_port;
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&certs.ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg(format!("https://localhost:{port}/healthz"))
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && body.trim() == "ok",
            "{body}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Plain HTTP on that port gets no answer.
        let output = Command::new("curl")
            .args(["--silent", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/healthz"))
            .output()
            .expect("curl");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plain_connections_with_28000() {
    if !common::have("psql", &["--version"]) || !common::have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(dir.path());
    let server = tls_server(dir.path(), &certs, &["--tls-required"]);
    let Err(err) = server.pg_config().connect(tokio_postgres::NoTls).await else {
        panic!("a plain connection was accepted");
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"));
    assert_eq!(db.code().code(), "28000", "{db:?}");
    assert!(db.message().contains("requires TLS"), "{}", db.message());

    let (ok, out) = psql(
        &format!(
            "sslmode=verify-full sslrootcert={} host=localhost port={} user=weir dbname=weir",
            certs.ca.display(),
            server.pg_port
        ),
        "SELECT 'over tls'",
    );
    assert!(ok && out.trim() == "over tls", "{out}");
}

#[test]
fn psycopg_verify_full() {
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !common::have(&python, &["-c", "import psycopg"]) || !common::have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(dir.path());
    let server = tls_server(dir.path(), &certs, &["--tls-required"]);
    let script = r#"
import sys, psycopg
port, ca = sys.argv[1], sys.argv[2]
with psycopg.connect(f"host=localhost port={port} dbname=weir user=weir sslmode=verify-full sslrootcert={ca}") as conn:
    print(conn.pgconn.ssl_in_use, conn.execute("select 1").fetchone()[0])
"#;
    let output = Command::new(&python)
        .args([
            "-c",
            script,
            &server.pg_port.to_string(),
            certs.ca.to_str().expect("utf8"),
        ])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "True 1");
}

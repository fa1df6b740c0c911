//! What a psql user reads when a statement names nothing, changes a
//! setting no one may change, or discards its session: the same text,
//! severity and SQLSTATE as PostgreSQL 15 shows for the same script
//! (`\set VERBOSITY verbose` puts the SQLSTATE in each line).
//!
//! - `DROP <kind> x` of a missing `x` names the kind (`materialized view
//!   "x" does not exist`, 42P01; a sink is no relation: 42704); with `IF
//!   EXISTS`, one NOTICE (00000) per missing name, and the command's tag.
//! - `SET server_version = ..` is 55P02 (cant_change_runtime_param).
//! - `DISCARD ALL` resets the session's settings and is refused inside a
//!   transaction block (25001); `DISCARD PLANS` answers with its own tag.
//! - `COMMIT` outside a block is a WARNING with 25P01.
//! - `pg_database` (psql's `\l`) says collation `C`, as `SHOW lc_collate`.

mod common;

use common::WeirProcess;

#[test]
fn psql_reads_postgres_messages_for_missing_objects_settings_and_discard() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    let script = "\\set VERBOSITY verbose
DROP MATERIALIZED VIEW nope;
DROP MATERIALIZED VIEW IF EXISTS nope;
DROP TABLE IF EXISTS a, b;
DROP STREAM s;
DROP SINK nope;
SET server_version = '1';
SET statement_timeout = '5s';
BEGIN;
DISCARD ALL;
ROLLBACK;
SHOW statement_timeout;
DISCARD ALL;
SHOW statement_timeout;
DISCARD PLANS;
COMMIT;
SELECT datcollate, datctype FROM pg_database WHERE datname = current_database();
SHOW lc_collate;
";
    let (stdout, stderr) = common::psql_script(&server, &["-At"], script);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "DROP MATERIALIZED VIEW",
            "DROP TABLE",
            "SET",
            "BEGIN",
            "ROLLBACK",
            "5s",
            "DISCARD ALL",
            "0",
            "DISCARD PLANS",
            "COMMIT",
            "C|C",
            "C",
        ],
        "stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "psql:<stdin>:2: ERROR:  42P01: materialized view \"nope\" does not exist",
            "psql:<stdin>:3: NOTICE:  00000: materialized view \"nope\" does not exist, skipping",
            "psql:<stdin>:4: NOTICE:  00000: table \"a\" does not exist, skipping",
            "psql:<stdin>:4: NOTICE:  00000: table \"b\" does not exist, skipping",
            "psql:<stdin>:5: ERROR:  42P01: stream \"s\" does not exist",
            "psql:<stdin>:6: ERROR:  42704: sink \"nope\" does not exist",
            "psql:<stdin>:7: ERROR:  55P02: parameter \"server_version\" cannot be changed",
            "psql:<stdin>:10: ERROR:  25001: DISCARD ALL cannot run inside a transaction block",
            "psql:<stdin>:16: WARNING:  25P01: there is no transaction in progress",
        ]
    );
}

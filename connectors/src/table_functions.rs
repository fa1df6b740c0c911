//! `read_csv('path', ...)`, `read_json('path')`, `read_parquet('path')`:
//! ad-hoc queries over files without a `CREATE TABLE`.
//!
//! Extra arguments are `'key=value'` strings with the same options as
//! `CREATE TABLE ... WITH (connector = 'file', ...)`, e.g.
//! `read_csv('data/x.tsv', 'delimiter=\t', 'header=false')`.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;

use crate::file::FileSpec;
use crate::options::ConnectorOptions;

/// One of the `read_*` table functions, fixed to a format.
#[derive(Debug)]
pub struct ReadFiles {
    name: &'static str,
    format: &'static str,
}

impl ReadFiles {
    /// `read_csv`.
    pub fn csv() -> Self {
        Self {
            name: "read_csv",
            format: "csv",
        }
    }
    /// `read_json` (newline-delimited).
    pub fn json() -> Self {
        Self {
            name: "read_json",
            format: "json",
        }
    }
    /// `read_parquet`.
    pub fn parquet() -> Self {
        Self {
            name: "read_parquet",
            format: "parquet",
        }
    }
    /// The SQL name of the function.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// All three, for registration.
    pub fn all() -> Vec<Arc<ReadFiles>> {
        vec![
            Arc::new(Self::csv()),
            Arc::new(Self::json()),
            Arc::new(Self::parquet()),
        ]
    }
}

impl TableFunctionImpl for ReadFiles {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let Some((first, rest)) = exprs.split_first() else {
            return plan_err!("{}() needs a file path as its first argument", self.name);
        };
        let path = string_literal(self.name, first)?;
        crate::paths::check(&path)?;
        let mut pairs = vec![
            ("path".to_string(), path),
            ("format".to_string(), self.format.to_string()),
        ];
        for arg in rest {
            let text = string_literal(self.name, arg)?;
            let Some((key, value)) = text.split_once('=') else {
                return plan_err!(
                    "{}(): option \"{text}\" is not of the form 'key=value'",
                    self.name
                );
            };
            pairs.push((key.trim().to_string(), value.trim().to_string()));
        }
        let mut options = ConnectorOptions::new(pairs);
        let spec = FileSpec::from_options(&mut options)?;
        options.finish(crate::file::CONNECTOR)?;
        let session = args.session();
        // Table functions are called synchronously while planning; planning
        // runs on the multi-threaded worker runtime, where blocking this one
        // thread for the file listing is allowed.
        let table = tokio_block_on(spec.open_table(session, None, true))?;
        Ok(table)
    }
}

fn string_literal(function: &str, expr: &Expr) -> Result<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Ok(s.clone()),
        other => plan_err!("{function}() takes string literals, got {other}"),
    }
}

fn tokio_block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => futures::executor::block_on(future),
    }
}

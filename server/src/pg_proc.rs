//! `pg_get_function_result`, `pg_get_function_arguments` and
//! `pg_get_functiondef`: what psql's `\df` and `\sf` and pgjdbc's
//! `getFunctions` show about a function.
//!
//! Weir's functions are Postgres's built-ins as `pg_proc` lists them (the
//! rows `datafusion-pg-catalog` exports from a Postgres server). At start
//! the engine reads those rows once, through SQL, and these functions
//! answer from that snapshot: `pg_proc` never changes while Weir runs.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// One `pg_proc` row, as the descriptions need it.
#[derive(Debug)]
struct Function {
    schema: String,
    name: String,
    /// Argument types, SQL-named (`integer`, `text`).
    arguments: Vec<String>,
    /// Argument names where `proargnames` gives them.
    argument_names: Vec<String>,
    result: String,
    language: String,
    volatility: String,
    parallel: String,
    strict: bool,
    security_definer: bool,
    leakproof: bool,
    cost: f64,
    rows: f64,
    source: String,
}

impl Function {
    fn arguments(&self) -> String {
        let described: Vec<String> = self
            .arguments
            .iter()
            .enumerate()
            .map(|(i, ty)| match self.argument_names.get(i) {
                Some(name) if !name.is_empty() => format!("{name} {ty}"),
                _ => ty.clone(),
            })
            .collect();
        described.join(", ")
    }

    /// `CREATE OR REPLACE FUNCTION ...`, laid out as Postgres's
    /// `pg_get_functiondef` lays it out (`ruleutils.c`).
    fn definition(&self) -> String {
        let mut def = format!(
            "CREATE OR REPLACE FUNCTION {}.{}({})\n RETURNS {}\n LANGUAGE {}\n",
            self.schema,
            self.name,
            self.arguments(),
            self.result,
            self.language
        );
        let mut options = String::new();
        options.push_str(match self.volatility.as_str() {
            "i" => " IMMUTABLE",
            "s" => " STABLE",
            _ => " VOLATILE",
        });
        options.push_str(match self.parallel.as_str() {
            "s" => " PARALLEL SAFE",
            "r" => " PARALLEL RESTRICTED",
            _ => "",
        });
        if self.strict {
            options.push_str(" STRICT");
        }
        if self.security_definer {
            options.push_str(" SECURITY DEFINER");
        }
        if self.leakproof {
            options.push_str(" LEAKPROOF");
        }
        // The default cost Postgres leaves unsaid: 1 for internal and C
        // functions, 100 for the others.
        let default_cost = if matches!(self.language.as_str(), "internal" | "c") {
            1.0
        } else {
            100.0
        };
        if self.cost != default_cost {
            let _ = write!(options, " COST {}", self.cost);
        }
        if self.rows > 0.0 && self.rows != 1000.0 {
            let _ = write!(options, " ROWS {}", self.rows);
        }
        def.push_str(&options);
        def.push('\n');
        let _ = writeln!(def, "AS $function${}$function$", self.source);
        def
    }
}

const FUNCTIONS_SQL: &str = "SELECT CAST(p.oid AS BIGINT) AS oid, CAST(p.proname AS TEXT), \
       CAST(n.nspname AS TEXT), CAST(p.prorettype AS BIGINT), p.proretset, \
       CAST(p.proargtypes AS TEXT), CAST(p.proargnames AS TEXT), CAST(l.lanname AS TEXT), \
       CAST(p.provolatile AS TEXT), CAST(p.proparallel AS TEXT), p.proisstrict, p.prosecdef, \
       p.proleakproof, CAST(p.procost AS DOUBLE), CAST(p.prorows AS DOUBLE), \
       CAST(p.prosrc AS TEXT) \
     FROM pg_catalog.pg_proc p \
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     LEFT JOIN pg_catalog.pg_language l ON l.oid = p.prolang";

const TYPES_SQL: &str = "SELECT CAST(t.oid AS BIGINT), CAST(format_type(t.oid, NULL) AS TEXT) FROM pg_catalog.pg_type t";

/// Read `pg_proc` and register the three functions on `ctx`.
pub async fn register(ctx: &SessionContext) -> Result<()> {
    let types = read(ctx, TYPES_SQL).await?;
    let mut type_names: HashMap<i64, String> = HashMap::new();
    for batch in &types {
        let oids = int64(batch, 0)?;
        let names = text(batch, 1)?;
        for i in 0..batch.num_rows() {
            if oids.is_valid(i) && names.is_valid(i) {
                type_names.insert(oids.value(i), names.value(i).to_string());
            }
        }
    }
    let type_name = |oid: i64| {
        type_names
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| oid.to_string())
    };

    let mut functions = HashMap::new();
    for batch in read(ctx, FUNCTIONS_SQL).await? {
        let oids = int64(&batch, 0)?;
        let names = text(&batch, 1)?;
        let schemas = text(&batch, 2)?;
        let results = int64(&batch, 3)?;
        let sets = boolean(&batch, 4)?;
        let argument_types = text(&batch, 5)?;
        let argument_names = text(&batch, 6)?;
        let languages = text(&batch, 7)?;
        let volatilities = text(&batch, 8)?;
        let parallels = text(&batch, 9)?;
        let stricts = boolean(&batch, 10)?;
        let definers = boolean(&batch, 11)?;
        let leakproofs = boolean(&batch, 12)?;
        let costs = float64(&batch, 13)?;
        let rows = float64(&batch, 14)?;
        let sources = text(&batch, 15)?;
        let string = |a: &StringArray, i: usize| {
            if a.is_valid(i) {
                a.value(i).to_string()
            } else {
                String::new()
            }
        };
        let flag = |a: &BooleanArray, i: usize| a.is_valid(i) && a.value(i);
        for i in 0..batch.num_rows() {
            if !oids.is_valid(i) {
                continue;
            }
            let result = type_name(results.value(i));
            let result = if flag(&sets, i) {
                format!("SETOF {result}")
            } else {
                result
            };
            functions.insert(
                oids.value(i),
                Function {
                    schema: string(&schemas, i),
                    name: string(&names, i),
                    arguments: numbers(&string(&argument_types, i))
                        .map(&type_name)
                        .collect(),
                    argument_names: words(&string(&argument_names, i)),
                    result,
                    language: string(&languages, i),
                    volatility: string(&volatilities, i),
                    parallel: string(&parallels, i),
                    strict: flag(&stricts, i),
                    security_definer: flag(&definers, i),
                    leakproof: flag(&leakproofs, i),
                    cost: if costs.is_valid(i) {
                        costs.value(i)
                    } else {
                        0.0
                    },
                    rows: if rows.is_valid(i) { rows.value(i) } else { 0.0 },
                    source: string(&sources, i),
                },
            );
        }
    }
    let functions = Arc::new(functions);
    for part in [Part::Result, Part::Arguments, Part::Definition] {
        ctx.register_udf(ScalarUDF::new_from_impl(Describe {
            part,
            functions: functions.clone(),
            signature: Signature::any(1, Volatility::Stable),
        }));
    }
    Ok(())
}

async fn read(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

fn column(batch: &RecordBatch, i: usize, to: &DataType) -> Result<Arc<dyn Array>> {
    Ok(cast(batch.column(i), to)?)
}

fn int64(batch: &RecordBatch, i: usize) -> Result<Int64Array> {
    Ok(column(batch, i, &DataType::Int64)?.as_primitive().clone())
}

fn float64(batch: &RecordBatch, i: usize) -> Result<Float64Array> {
    Ok(column(batch, i, &DataType::Float64)?.as_primitive().clone())
}

fn text(batch: &RecordBatch, i: usize) -> Result<StringArray> {
    Ok(column(batch, i, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn boolean(batch: &RecordBatch, i: usize) -> Result<BooleanArray> {
    Ok(column(batch, i, &DataType::Boolean)?.as_boolean().clone())
}

/// The OIDs in an `oidvector` as text, in either spelling the export
/// uses (`25 23`, `[25, 23]`, `{25,23}`).
fn numbers(text: &str) -> impl Iterator<Item = i64> + '_ {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
}

/// The names in a `text[]` as text (`{word,catcode}`).
fn words(text: &str) -> Vec<String> {
    let inner = text
        .trim()
        .trim_start_matches(['{', '['])
        .trim_end_matches(['}', ']']);
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|w| w.trim().trim_matches('"').to_string())
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Part {
    Result,
    Arguments,
    Definition,
}

/// One of the three functions; NULL for an OID that is no function, as in
/// Postgres.
#[derive(Debug)]
struct Describe {
    part: Part,
    functions: Arc<HashMap<i64, Function>>,
    signature: Signature,
}

impl PartialEq for Describe {
    fn eq(&self, other: &Self) -> bool {
        self.part == other.part
    }
}

impl Eq for Describe {}

impl std::hash::Hash for Describe {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.part.hash(state);
    }
}

impl ScalarUDFImpl for Describe {
    fn name(&self) -> &str {
        match self.part {
            Part::Result => "pg_get_function_result",
            Part::Arguments => "pg_get_function_arguments",
            Part::Definition => "pg_get_functiondef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Int64)?;
        let oids: &Int64Array = oids.as_primitive();
        let described: StringArray = oids
            .iter()
            .map(|oid| {
                let function = self.functions.get(&oid?)?;
                Some(match self.part {
                    Part::Result => function.result.clone(),
                    Part::Arguments => function.arguments(),
                    Part::Definition => function.definition(),
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(described)))
    }
}

//! `pg_get_indexdef` and `pg_get_constraintdef` over the primary keys, and
//! `pg_get_userbyid` naming Weir's bootstrap user.

use super::*;

/// Register `pg_get_indexdef` and `pg_get_constraintdef` over `keys`, and
/// `pg_get_userbyid`, replacing same-named functions.
pub fn register_functions(ctx: &SessionContext, keys: &Arc<KeyDefinitions>) {
    // psql's `\d`, `\dt`, `\l` show owners through it; the crate's answers
    // `postgres`, a role Weir does not have. Relations carry no owner OID
    // yet (`relowner` is 0), so every one is shown as the bootstrap user's,
    // which owns every object no other role created.
    ctx.register_udf(datafusion::logical_expr::create_udf(
        "pg_get_userbyid",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = match &args[0] {
                ColumnarValue::Array(array) => array.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![
                crate::auth::BOOTSTRAP_USER;
                rows
            ]))))
        }),
    ));
    for kind in [Describe::IndexDef, Describe::ConstraintDef] {
        ctx.register_udf(ScalarUDF::new_from_impl(DescribeKey {
            kind,
            keys: keys.clone(),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Any(2),
                    TypeSignature::Any(3),
                ],
                Volatility::Stable,
            ),
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
pub(super) enum Describe {
    IndexDef,
    ConstraintDef,
}

/// `pg_get_indexdef(oid [, column, pretty])` and
/// `pg_get_constraintdef(oid [, pretty])` for primary keys; NULL for any
/// other OID (Weir has no other indexes or constraints).
#[derive(Debug)]
pub(super) struct DescribeKey {
    kind: Describe,
    keys: Arc<KeyDefinitions>,
    signature: Signature,
}

impl PartialEq for DescribeKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for DescribeKey {}

impl std::hash::Hash for DescribeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl DescribeKey {
    fn describe(&self, key: &KeyDefinition, column: i64) -> Option<String> {
        match self.kind {
            // `pg_get_indexdef(oid, n, ...)` with n > 0 names the n-th
            // column only (pgjdbc `getIndexInfo` reads names this way).
            Describe::IndexDef if column > 0 => key
                .columns
                .get(usize::try_from(column - 1).ok()?)
                .map(|(name, _)| name.clone()),
            Describe::IndexDef => Some(format!(
                "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                key.index_name(),
                key.schema,
                key.table,
                key.column_list()
            )),
            Describe::ConstraintDef => Some(format!("PRIMARY KEY ({})", key.column_list())),
        }
    }
}

impl ScalarUDFImpl for DescribeKey {
    fn name(&self) -> &str {
        match self.kind {
            Describe::IndexDef => "pg_get_indexdef",
            Describe::ConstraintDef => "pg_get_constraintdef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let int64 = |value: &ColumnarValue| -> Result<Int64Array> {
            let array = cast(&value.to_array(rows)?, &DataType::Int64)?;
            Ok(array
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("not an oid".to_string()))?
                .clone())
        };
        let oids = int64(&args.args[0])?;
        let columns = match (self.kind, args.args.get(1)) {
            (Describe::IndexDef, Some(column)) => Some(int64(column)?),
            _ => None,
        };
        let described: StringArray = (0..rows)
            .map(|i| {
                let oid = i32::try_from(oids.is_valid(i).then(|| oids.value(i))?).ok()?;
                let column = columns
                    .as_ref()
                    .map_or(0, |c| if c.is_valid(i) { c.value(i) } else { 0 });
                self.describe(&self.keys.get(oid)?, column)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(described)))
    }
}

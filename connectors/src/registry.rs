//! The connectors Weir has, by name, and what each can be: the one place
//! `CREATE STREAM`, `CREATE TABLE` and `CREATE SINK` look a connector up.
//!
//! ```text
//!   WITH (connector = 'kafka', topic = 'bids', ...)
//!        │  registry::open_stream / open_table / open_sink
//!        │    1. find the connector by name            (else: unknown connector)
//!        │    2. can it be this? (stream, table, sink) (else: it cannot be that)
//!        │    3. every option declared for that role,  (else: the option, and
//!        │       every required one given                 what is accepted)
//!        v
//!   Connector::open_stream / open_table / open_sink ──> the opened thing
//! ```
//!
//! # Adding a connector
//! A new connector is one new module plus one line: write the module with a
//! unit struct implementing [`Connector`] (its name, what it can be, its
//! options, and a constructor per role it has), then add it to
//! [`CONNECTORS`] below. Nothing in the server changes.
//!
//! # Correctness
//! Options are checked against the declared ones before a constructor runs,
//! and every option must still be consumed by the constructor afterwards
//! (`ConnectorOptions::finish`), so a typo is always an error and an option
//! declared but not read cannot pass silently either.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use weir_runtime::job::Sink;

use crate::error::{ConnectorError, Result};
use crate::opened_stream::OpenedStream;
use crate::options::ConnectorOptions;

/// Every connector, listed once. Add a new one here.
static CONNECTORS: &[&dyn Connector] = &[
    &crate::file::FileConnector,
    &crate::nexmark::NexmarkConnector,
    &crate::datagen::DatagenConnector,
    &crate::kafka::KafkaConnector,
];

/// What a connector can be in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `CREATE STREAM ... WITH (connector = ...)`: a source of rows over time.
    Stream,
    /// `CREATE TABLE ... WITH (connector = ...)`: a table read by queries.
    Table,
    /// `CREATE SINK ... WITH (connector = ...)`: where a view's changes go.
    Sink,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Stream => "stream",
            Role::Table => "table",
            Role::Sink => "sink",
        })
    }
}

/// Every role, in the order they are listed in messages.
const ROLES: [Role; 3] = [Role::Stream, Role::Table, Role::Sink];

/// One option a connector accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The key, lowercase. A `<...>` part stands for any text:
    /// `properties.<name>` accepts `properties.security.protocol`.
    pub name: &'static str,
    /// What it sets, in a few words.
    pub description: &'static str,
    /// The roles it applies to.
    pub roles: &'static [Role],
    /// Must it be given (in every role it applies to)?
    pub required: bool,
}

impl OptionSpec {
    /// An optional option for every role of its connector.
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            roles: &ROLES,
            required: false,
        }
    }

    /// The same option, required.
    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// The same option, for `roles` only.
    pub const fn only(self, roles: &'static [Role]) -> Self {
        Self { roles, ..self }
    }

    /// Does `key` (lowercase) name this option?
    fn matches(&self, key: &str) -> bool {
        match (self.name.split_once('<'), self.name.split_once('>')) {
            (Some((prefix, _)), Some((_, suffix))) => {
                key.len() > prefix.len() + suffix.len()
                    && key.starts_with(prefix)
                    && key.ends_with(suffix)
            }
            _ => key == self.name,
        }
    }
}

/// A connector: a kind of outside system, and what it can be in SQL.
///
/// The constructors a connector does not have keep their default, which
/// refuses with [`ConnectorError::CannotBe`]; the registry asks
/// [`Connector::can_be`] first, so the two must agree (a unit test checks).
#[async_trait]
pub trait Connector: Send + Sync {
    /// Its name in `WITH (connector = '...')`, lowercase.
    fn name(&self) -> &'static str;

    /// What it can be.
    fn can_be(&self) -> &'static [Role];

    /// The options it accepts, with what each sets.
    fn options(&self) -> &'static [OptionSpec];

    /// Open a stream with the `declared` columns (`None`: none were
    /// declared). Consumes the options it reads.
    async fn open_stream(
        &self,
        _state: &dyn Session,
        _options: &mut ConnectorOptions,
        _declared: Option<SchemaRef>,
    ) -> Result<OpenedStream> {
        Err(cannot_be(self.name(), self.can_be(), Role::Stream))
    }

    /// Open a stream again on a restart, with the columns it was created
    /// with: by default as [`Connector::open_stream`]. A connector whose
    /// input may be away for now (a folder emptied since) opens it anyway,
    /// as a restored table does ([`Opening::Restore`]).
    async fn reopen_stream(
        &self,
        state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: SchemaRef,
    ) -> Result<OpenedStream> {
        self.open_stream(state, options, Some(declared)).await
    }

    /// Open a table with the `declared` columns. Consumes the options it
    /// reads.
    async fn open_table(
        &self,
        _state: &dyn Session,
        _options: &mut ConnectorOptions,
        _declared: Option<SchemaRef>,
        _opening: Opening,
    ) -> Result<Arc<dyn TableProvider>> {
        Err(cannot_be(self.name(), self.can_be(), Role::Table))
    }

    /// Open sink `name` for a view's rows of `schema` (its changes with the
    /// op column when `changelog`). Consumes the options it reads.
    fn open_sink(
        &self,
        _name: &str,
        _schema: SchemaRef,
        _changelog: bool,
        _options: &mut ConnectorOptions,
    ) -> Result<Arc<dyn Sink>> {
        Err(cannot_be(self.name(), self.can_be(), Role::Sink))
    }
}

/// Why a table is opened, which decides how strict opening is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `CREATE TABLE`: the data must be there now, so a typo fails at once.
    Create,
    /// A restart: the table is registered even if its data is away for now
    /// (a mount not up yet); queries fail with a clear error until it is back.
    Restore,
}

/// The connector called `name`.
pub fn find(name: &str) -> Result<&'static dyn Connector> {
    let name = name.to_ascii_lowercase();
    CONNECTORS
        .iter()
        .copied()
        .find(|c| c.name() == name)
        .ok_or_else(|| ConnectorError::UnknownConnector {
            name,
            known: list(CONNECTORS.iter().map(|c| c.name())),
        })
}

/// Every connector Weir has.
pub fn all() -> impl Iterator<Item = &'static dyn Connector> {
    CONNECTORS.iter().copied()
}

/// `CREATE STREAM`: open the stream `options` name, with `declared` columns.
pub async fn open_stream(
    state: &dyn Session,
    mut options: ConnectorOptions,
    declared: Option<SchemaRef>,
) -> Result<OpenedStream> {
    let connector = take_connector(&mut options, Role::Stream)?;
    let opened = connector.open_stream(state, &mut options, declared).await?;
    finish(options, connector, Role::Stream)?;
    Ok(opened)
}

/// A restart: open the stream `options` name again, with the columns it
/// was created with ([`Connector::reopen_stream`]).
pub async fn reopen_stream(
    state: &dyn Session,
    mut options: ConnectorOptions,
    declared: SchemaRef,
) -> Result<OpenedStream> {
    let connector = take_connector(&mut options, Role::Stream)?;
    let opened = connector
        .reopen_stream(state, &mut options, declared)
        .await?;
    finish(options, connector, Role::Stream)?;
    Ok(opened)
}

/// `CREATE TABLE ... WITH`: open the table `options` name.
pub async fn open_table(
    state: &dyn Session,
    mut options: ConnectorOptions,
    declared: Option<SchemaRef>,
    opening: Opening,
) -> Result<Arc<dyn TableProvider>> {
    let connector = take_connector(&mut options, Role::Table)?;
    let table = connector
        .open_table(state, &mut options, declared, opening)
        .await?;
    finish(options, connector, Role::Table)?;
    Ok(table)
}

/// `CREATE SINK`: open sink `name` of a view with `schema` (its changes
/// when `changelog`).
pub fn open_sink(
    name: &str,
    schema: SchemaRef,
    changelog: bool,
    mut options: ConnectorOptions,
) -> Result<Arc<dyn Sink>> {
    let connector = take_connector(&mut options, Role::Sink)?;
    // A sink's name becomes part of its files' names.
    crate::paths::check_file_name_part("sink", name)?;
    let sink = connector.open_sink(name, schema, changelog, &mut options)?;
    finish(options, connector, Role::Sink)?;
    Ok(sink)
}

/// Take `connector` out of `options`, find it, and check that it can be
/// `role` and that the other options are its own for that role.
fn take_connector(options: &mut ConnectorOptions, role: Role) -> Result<&'static dyn Connector> {
    let Some(name) = options.take("connector") else {
        return Err(ConnectorError::MissingConnector {
            role,
            one_of: list(
                all()
                    .filter(|c| c.can_be().contains(&role))
                    .map(|c| c.name()),
            ),
        });
    };
    let connector = find(&name)?;
    if !connector.can_be().contains(&role) {
        return Err(cannot_be(connector.name(), connector.can_be(), role));
    }
    // Any connector's `path` names a file or folder: confined, whoever
    // reads it (see `paths`).
    if let Some(path) = options.as_map().get("path") {
        crate::paths::check(path)?;
    }
    let declared = || {
        connector
            .options()
            .iter()
            .filter(move |o| o.roles.contains(&role))
    };
    if let Some(key) = options
        .as_map()
        .keys()
        .find(|key| !declared().any(|o| o.matches(key)))
    {
        return Err(unknown_option(connector, role, key.clone()));
    }
    if let Some(missing) =
        declared().find(|o| o.required && !options.as_map().keys().any(|key| o.matches(key)))
    {
        return Err(ConnectorError::MissingOption {
            connector: connector.name().to_string(),
            option: missing.name,
        });
    }
    Ok(connector)
}

/// Fail on an option the constructor did not read (a `fields.<column>.kind`
/// for a column that does not exist), naming what is accepted.
fn finish(options: ConnectorOptions, connector: &dyn Connector, role: Role) -> Result<()> {
    match options.as_map().keys().next() {
        None => Ok(()),
        Some(key) => Err(unknown_option(connector, role, key.clone())),
    }
}

fn unknown_option(connector: &dyn Connector, role: Role, option: String) -> ConnectorError {
    let accepted = list(
        connector
            .options()
            .iter()
            .filter(|o| o.roles.contains(&role))
            .map(|o| o.name),
    );
    ConnectorError::UnknownOption {
        connector: connector.name().to_string(),
        option,
        accepts: Some(format!("a {} {role} accepts {accepted}", connector.name())),
    }
}

/// The error of connector `name` (which can be `can_be`) used as `role`.
pub(crate) fn cannot_be(name: &str, can_be: &[Role], role: Role) -> ConnectorError {
    ConnectorError::CannotBe {
        connector: name.to_string(),
        role,
        can_be: list(can_be.iter().map(|r| format!("a {r}"))),
    }
}

/// `a, b or c`.
fn list<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<S> = items.collect();
    match items.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.as_ref().to_string(),
        Some((last, rest)) => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} or {}", rest.join(", "), last.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lowercase_and_options_described() {
        let mut names: Vec<&str> = all().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CONNECTORS.len(), "a connector is listed twice");
        for connector in all() {
            assert_eq!(connector.name(), connector.name().to_ascii_lowercase());
            assert!(
                !connector.can_be().is_empty(),
                "{} can be nothing",
                connector.name()
            );
            for option in connector.options() {
                assert!(
                    !option.description.is_empty(),
                    "{}.{} has no description",
                    connector.name(),
                    option.name
                );
                assert!(
                    option.roles.iter().any(|r| connector.can_be().contains(r)),
                    "{}.{} is for no role the connector can be",
                    connector.name(),
                    option.name
                );
            }
        }
    }

    #[test]
    fn a_connector_cannot_be_what_it_does_not_say() {
        // Every role a connector does not claim keeps the default refusal.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        for connector in all() {
            if !connector.can_be().contains(&Role::Sink) {
                let err = connector
                    .open_sink("s", schema.clone(), false, &mut ConnectorOptions::default())
                    .err()
                    .expect("a sink it cannot be");
                assert!(matches!(err, ConnectorError::CannotBe { .. }), "{err}");
            }
        }
        let err = open_sink(
            "s",
            schema,
            false,
            ConnectorOptions::new([("connector", "nexmark")]),
        )
        .err()
        .expect("nexmark is no sink");
        assert_eq!(
            err.to_string(),
            "connector \"nexmark\" cannot be a sink: it can be a stream"
        );
    }

    #[test]
    fn options_are_checked_against_the_declared_ones() {
        let unknown = take_connector(
            &mut ConnectorOptions::new([
                ("connector", "File"),
                ("path", "x.csv"),
                ("delimter", ";"),
            ]),
            Role::Table,
        )
        .err()
        .expect("a typo must not pass");
        assert_eq!(
            unknown.to_string(),
            "unknown option \"delimter\" for connector \"file\": \
             a file table accepts path, format, header, delimiter, on_error or dead_letter_path"
        );
        let missing = take_connector(
            &mut ConnectorOptions::new([
                ("connector", "kafka"),
                ("topic", "t"),
                ("format", "json"),
            ]),
            Role::Stream,
        )
        .err()
        .expect("brokers are required");
        assert_eq!(
            missing.to_string(),
            "option \"brokers\" is required for connector \"kafka\""
        );
        // A pattern option: any property passes through.
        take_connector(
            &mut ConnectorOptions::new([
                ("connector", "kafka"),
                ("topic", "t"),
                ("brokers", "b"),
                ("format", "json"),
                ("properties.security.protocol", "PLAINTEXT"),
            ]),
            Role::Stream,
        )
        .expect("declared options");
        // An option of the same connector, for another role.
        let role = take_connector(
            &mut ConnectorOptions::new([
                ("connector", "kafka"),
                ("topic", "t"),
                ("brokers", "b"),
                ("format", "json"),
                ("scan_startup", "latest"),
            ]),
            Role::Sink,
        )
        .err()
        .expect("a source option on a sink");
        assert!(role.to_string().contains("a kafka sink accepts"), "{role}");
    }

    #[test]
    fn patterns_match_their_placeholder_only() {
        let spec = OptionSpec::new("fields.<column>.kind", "d");
        assert!(spec.matches("fields.at.kind"));
        assert!(!spec.matches("fields..kind"));
        assert!(!spec.matches("fields.at.min"));
        assert!(OptionSpec::new("path", "d").matches("path"));
    }
}

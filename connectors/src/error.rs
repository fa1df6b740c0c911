//! Errors of connectors: most are the user's (bad options, missing files),
//! some an outside system's (I/O), and a few ours.

use datafusion::error::DataFusionError;

/// Result alias for this crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Why a connector could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The user named a connector Weir does not have.
    #[error("unknown connector \"{0}\"")]
    UnknownConnector(String),
    /// A required option is missing (user's fault).
    #[error("option \"{option}\" is required for connector \"{connector}\"")]
    MissingOption {
        connector: String,
        option: &'static str,
    },
    /// An option the connector does not know (user's fault).
    #[error("unknown option \"{option}\" for connector \"{connector}\"")]
    UnknownOption { connector: String, option: String },
    /// An option with a value that cannot be used (user's fault).
    #[error("invalid value \"{value}\" for option \"{option}\": {reason}")]
    InvalidOption {
        option: String,
        value: String,
        reason: String,
    },
    /// The path matched no file (user's fault, or the files went away).
    #[error("could not find any file at \"{0}\"")]
    NoFiles(String),
    /// Reading or listing the files failed; DataFusion says why.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<ConnectorError> for DataFusionError {
    fn from(err: ConnectorError) -> Self {
        match err {
            ConnectorError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

//! What a command's failure is and the exit code it deserves: 2 for a usage or
//! configuration error, 1 for a failure while running.

use crate::config::ConfigError;

/// An error and the exit code it deserves.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2: the user asked for something invalid or the config is wrong.
    Usage(anyhow::Error),
    /// Exit 1: something failed while running.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(e.into())
    }
}

impl From<crate::axeos::ClientBuildError> for Failure {
    fn from(e: crate::axeos::ClientBuildError) -> Self {
        Failure::Runtime(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

//! Miner credentials for firmware with HTTP Basic auth: the password as a [`Secret`] that
//! prints as `***` wherever it could leak by accident (logs, errors, `Debug`), and the three
//! places config.yaml may take it from (`password`, `password_file`, `password_env`).

use std::fmt;
use std::path::Path;

pub use crate::axeos::address::{Credentials, Secret};

/// The largest password file read: a password, not a document.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Where config.yaml says a device's password is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Inline(Secret),
    /// A path as written (relative ones resolve against the config file's folder).
    File(String),
    /// The name of an environment variable.
    Env(String),
}

impl PasswordSource {
    /// The config key this source is written under.
    pub fn key(&self) -> &'static str {
        match self {
            PasswordSource::Inline(_) => "password",
            PasswordSource::File(_) => "password_file",
            PasswordSource::Env(_) => "password_env",
        }
    }

    /// Reads the password. `folder` is the config file's folder. The error says what is
    /// wrong without a byte of the password.
    pub fn read(&self, folder: Option<&Path>) -> Result<Secret, String> {
        match self {
            PasswordSource::Inline(secret) => Ok(secret.clone()),
            PasswordSource::Env(name) => match std::env::var(name) {
                Ok(value) => non_empty(value, || format!("the environment variable {name} is empty")),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "the environment variable {name} is not set (set it where the exporter starts, e.g. \
                     Environment= in its systemd unit)"
                )),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("the environment variable {name} is not valid UTF-8"))
                }
            },
            PasswordSource::File(written) => {
                let path = match folder {
                    Some(folder) if Path::new(written).is_relative() => folder.join(written),
                    _ => Path::new(written).to_path_buf(),
                };
                let shown = path.display();
                // A FIFO would block for ever and /dev/zero never ends: a small regular file only.
                let metadata = std::fs::metadata(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
                if !metadata.is_file() {
                    return Err(format!("{shown} is not a regular file"));
                }
                if metadata.len() > MAX_PASSWORD_FILE_BYTES {
                    return Err(format!(
                        "{shown} is larger than {MAX_PASSWORD_FILE_BYTES} bytes; it should hold the password alone"
                    ));
                }
                let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
                let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
                // `echo secret > file` leaves a newline the password does not have.
                let password = text.trim_end_matches(['\n', '\r']).to_string();
                non_empty(password, || format!("{shown} is empty"))
            }
        }
    }
}

fn non_empty(password: String, empty: impl Fn() -> String) -> Result<Secret, String> {
    if password.is_empty() {
        Err(empty())
    } else {
        Ok(Secret::new(password))
    }
}

/// An inline `password:` as config.yaml holds it. Only a string is taken, and a wrong type
/// is refused without the value (serde's own message would quote a number).
#[derive(Debug)]
pub(crate) struct RawPassword(pub Secret);

impl<'de> serde::Deserialize<'de> for RawPassword {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        const QUOTE: &str = "must be a quoted string (a password YAML reads as a number, true/false or a list \
                             would not be sent as written)";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawPassword;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quoted string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawPassword, E> {
                Ok(RawPassword(Secret::new(text)))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawPassword, E> {
                Err(E::custom(QUOTE))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawPassword, E> {
                Err(E::custom(QUOTE))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawPassword, E> {
                Err(E::custom(QUOTE))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawPassword, E> {
                Err(E::custom(QUOTE))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawPassword, E> {
                Err(E::custom(QUOTE))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<RawPassword, A::Error> {
                Err(serde::de::Error::custom(QUOTE))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<RawPassword, A::Error> {
                Err(serde::de::Error::custom(QUOTE))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A `username` as HTTP Basic auth can carry it: not empty, no `:` (which would end it),
/// no control characters.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("must not be empty".into());
    }
    if username.contains(':') {
        return Err("must not contain ':' (HTTP Basic auth ends the user name there)".into());
    }
    if username.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let credentials = Credentials {
            username: "admin".into(),
            password: Secret::new("hunter2"),
            device: "a".into(),
        };
        let shown = format!("{credentials:?} {} {:?}", credentials.password, credentials.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert_eq!(credentials.password.expose(), "hunter2");
    }

    #[test]
    fn a_password_file_loses_its_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), " s3cret \r\n").unwrap();
        let read = PasswordSource::File("pw".into()).read(Some(dir.path())).unwrap();
        assert_eq!(read.expose(), " s3cret ");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let error = PasswordSource::File("empty".into()).read(Some(dir.path())).unwrap_err();
        assert!(error.contains("is empty"), "{error}");
        let error = PasswordSource::File("missing".into())
            .read(Some(dir.path()))
            .unwrap_err();
        assert!(error.contains("missing") && error.contains("cannot read"), "{error}");
    }
}

//! Reading and checking a bundle's config.json.
//!
//! Parsing goes through `serde_path_to_error` so that a value of the wrong type is reported
//! with the JSON path of the field (`process.user.uid`), not just a line and column.
//! Unknown fields are accepted, as runtime-spec requires. Semantic checks that serde cannot
//! express live in [`validate`].

mod unsupported;
pub mod validate;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

pub use validate::{validate, Invalid};

/// Why a config.json could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path} is not valid JSON")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A field has a value of the wrong type or an unknown enumeration value.
    #[error("{path}: invalid value at `{field}`")]
    Field {
        path: PathBuf,
        field: String,
        #[source]
        source: serde_json::Error,
    },
    /// The document parsed but breaks a rule of runtime-spec or of hull.
    #[error("{path}: invalid value at `{}`", .source.field)]
    Invalid {
        path: PathBuf,
        #[source]
        source: Invalid,
    },
}

/// Deserializes JSON, reporting a wrong value by its JSON path and a syntax error as
/// such. `path` is only used in error messages.
fn deserialize<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let source = e.into_inner();
        if source.is_syntax() || source.is_eof() || field == "." {
            ConfigError::Syntax {
                path: path.to_owned(),
                source,
            }
        } else {
            ConfigError::Field {
                path: path.to_owned(),
                field,
                source,
            }
        }
    })
}

/// Parses config.json bytes. `path` is only used in error messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Spec, ConfigError> {
    let spec: Spec = deserialize(bytes, path)?;
    validate(&spec)
        .and_then(|()| unsupported::check(&spec))
        .map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    Ok(spec)
}

/// Loads and validates `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, ConfigError> {
    load_file(&bundle.join("config.json"))
}

/// Loads and validates the config file at `path`.
pub fn load_file(path: &Path) -> Result<Spec, ConfigError> {
    let path = path.to_owned();
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&bytes, &path)
}

/// Loads a runtime-spec Process (`exec -p process.json`).
pub fn load_process(path: &Path) -> Result<oci_spec::runtime::Process, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let p: oci_spec::runtime::Process = deserialize(&bytes, path)?;
    validate::process(&p).map_err(|source| ConfigError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        let e = parse(json.as_bytes(), Path::new("config.json")).unwrap_err();
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        s
    }

    #[test]
    fn names_the_field_with_a_wrong_type() {
        let e =
            err(r#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":"root","gid":0}}}"#);
        assert!(e.contains("`process.user.uid`"), "{e}");
    }

    #[test]
    fn syntax_error_is_not_blamed_on_a_field() {
        let e = err(r#"{"ociVersion": "1.2.0","#);
        assert!(e.contains("is not valid JSON"), "{e}");
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let json = r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"future":1},"futureThing":{"a":1}}"#;
        parse(json.as_bytes(), Path::new("config.json")).unwrap();
    }

    #[test]
    fn unknown_namespace_type_names_its_index() {
        let e = err(
            r#"{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        );
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
    }
}

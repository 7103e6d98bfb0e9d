//! Loading a CNI network configuration: a `.conflist`, or a single-plugin `.conf`/`.json`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::CniError;

/// The CNI spec versions whose result format (`ips`, `interfaces`) this driver parses.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// A network configuration list, as the plugins will see it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// The network's `name`.
    pub name: String,
    /// The list's `cniVersion`, given to every plugin.
    pub cni_version: String,
    /// The plugin objects, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from (or the cache file).
    pub source: PathBuf,
}

impl NetworkConfig {
    /// The list in conflist form, as stored in the cache.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins,
        })
    }

    /// The plugin `type`s, in order.
    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or_default())
    }
}

fn invalid(path: &Path, why: impl Into<String>) -> CniError {
    CniError::InvalidConfig {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Parses a config: a list (it has `plugins`, whatever the file's extension) or a single
/// plugin, which becomes a list of one.
pub fn from_value(value: Value, path: &Path) -> Result<NetworkConfig, CniError> {
    let Value::Object(mut obj) = value else {
        return Err(invalid(path, "not a JSON object"));
    };
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => return Err(invalid(path, "missing \"name\"")),
    };
    let version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "missing \"cniVersion\""))?
        .to_owned();
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(CniError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let plugins = match obj.remove("plugins") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid(path, "\"plugins\" is not an array")),
        None => vec![Value::Object(obj)],
    };
    let plugins: Vec<Map<String, Value>> = plugins
        .into_iter()
        .map(|p| match p {
            Value::Object(m) => Ok(m),
            _ => Err(invalid(path, "a plugin is not an object")),
        })
        .collect::<Result<_, _>>()?;
    if plugins.is_empty() {
        return Err(invalid(path, "no plugins"));
    }
    for p in &plugins {
        match p.get("type").and_then(Value::as_str) {
            Some(t) if is_plain_name(t) => {}
            _ => return Err(invalid(path, "a plugin has no \"type\" or one with a '/'")),
        }
    }
    Ok(NetworkConfig {
        name,
        cni_version: version,
        plugins,
        source: path.to_path_buf(),
    })
}

/// A plugin type names a file in a plugin directory, never a path.
fn is_plain_name(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// The configuration of `dir`: the lexically first file ending in `.conflist`, `.conf` or
/// `.json` (as libcni orders them). `None` when there is none (or no directory).
pub fn load(dir: &Path) -> Result<Option<NetworkConfig>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniError::Io {
                op: "read config directory",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            [".conflist", ".conf", ".json"]
                .iter()
                .any(|x| n.ends_with(x))
        })
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        return Ok(None);
    };
    let path = dir.join(first);
    let bytes = fs::read(&path).map_err(|source| CniError::Io {
        op: "read config",
        path: path.clone(),
        source,
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|source| CniError::ConfigJson {
        path: path.clone(),
        source,
    })?;
    from_value(value, &path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_file_wins_and_single_plugin_becomes_list() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("README"), "not a config").unwrap();
        fs::write(
            d.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        fs::write(
            d.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"loopback"}"#,
        )
        .unwrap();
        let c = load(d.path()).unwrap().unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.cni_version, "0.4.0");
        assert_eq!(c.plugin_types().collect::<Vec<_>>(), ["loopback"]);
        // The cached form loads back to the same thing.
        assert_eq!(from_value(c.to_value(), &c.source).unwrap(), c);
    }

    #[test]
    fn missing_dir_or_no_config_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(&d.path().join("nope")).unwrap().is_none());
        assert!(load(d.path()).unwrap().is_none());
    }

    #[test]
    fn bad_configs_refused() {
        let p = Path::new("/x.conflist");
        let bad = [
            (
                r#"{"cniVersion":"0.2.0","name":"a","type":"bridge"}"#,
                "UnsupportedVersion",
            ),
            (r#"{"cniVersion":"1.0.0","type":"bridge"}"#, "name"),
            (
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
                "no plugins",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"../sh"}]}"#,
                "type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[1]}"#,
                "not an object",
            ),
        ];
        for (json, want) in bad {
            let e = from_value(serde_json::from_str(json).unwrap(), p).unwrap_err();
            let s = format!("{e} {e:?}");
            assert!(s.contains(want), "{json}: {s}");
        }
    }
}

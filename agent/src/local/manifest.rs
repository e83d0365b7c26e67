//! A directory of functions for `serve-local`: one subdirectory per function, named as the
//! function, holding a manifest file (`fresco-function.json`):
//!
//! ```json
//! {"runtime_image": "fresco/python3:dev", "handler": "main.handler",
//!  "memory_mb": 128, "timeout_s": 3, "environment": {"GREETING": "hi"}}
//! ```
//!
//! `runtime_image` and `handler` are required; `runtime_kind` (`python` or `provided`) is
//! told by the image's name when absent; `memory_mb` and `timeout_s` default to the
//! platform's (128, 3). The code is the subdirectory itself without the manifest, or
//! `code_dir` (a directory) or `package` (a zip or tar.gz), relative to the subdirectory.
//! Unknown fields are refused. Subdirectories without a manifest are not functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    check_name, runtime_kind_of, Code, LocalError, LocalFunction, DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
};

/// The manifest's file name in each function's subdirectory.
pub const MANIFEST: &str = "fresco-function.json";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    runtime_image: String,
    #[serde(default)]
    runtime_kind: Option<String>,
    handler: String,
    #[serde(default)]
    memory_mb: Option<i32>,
    #[serde(default)]
    timeout_s: Option<i32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    code_dir: Option<PathBuf>,
    #[serde(default)]
    package: Option<PathBuf>,
}

/// The runtime kind a function runs with: the one given, else the image's.
pub fn runtime_kind(given: Option<&str>, image: &str) -> Result<String, LocalError> {
    match given {
        Some(kind) => Ok(kind.to_owned()),
        None => runtime_kind_of(image).map(str::to_owned).ok_or_else(|| {
            LocalError::Invalid(format!(
                "cannot tell the runtime kind of image {image:?}: give it (python or provided)"
            ))
        }),
    }
}

/// Reads the function of subdirectory `dir` (named `name`) from its manifest.
pub fn read_function(name: &str, dir: &Path) -> Result<LocalFunction, LocalError> {
    check_name(name)?;
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|source| LocalError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| LocalError::Invalid(format!("{}: {e}", path.display())))?;
    let code = match (manifest.code_dir, manifest.package) {
        (Some(_), Some(_)) => {
            return Err(LocalError::Invalid(format!(
                "{}: give code_dir or package, not both",
                path.display()
            )))
        }
        (Some(code_dir), None) => Code::Dir {
            path: dir.join(code_dir),
            skip: Vec::new(),
        },
        (None, Some(package)) => Code::Package(dir.join(package)),
        (None, None) => Code::Dir {
            path: dir.to_path_buf(),
            skip: vec![MANIFEST.to_owned()],
        },
    };
    Ok(LocalFunction {
        name: name.to_owned(),
        runtime_kind: runtime_kind(manifest.runtime_kind.as_deref(), &manifest.runtime_image)?,
        image: manifest.runtime_image,
        handler: manifest.handler,
        memory_mb: manifest.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        timeout_s: manifest.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S),
        environment: manifest.environment,
        code,
    })
}

/// Every function of directory `root` (its subdirectories holding a manifest), sorted by name.
pub fn read_dir(root: &Path) -> Result<Vec<LocalFunction>, LocalError> {
    let read = |source| LocalError::Read {
        path: root.display().to_string(),
        source,
    };
    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root).map_err(read)? {
        let entry = entry.map_err(read)?;
        let path = entry.path();
        if !path.is_dir() || !path.join(MANIFEST).is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        functions.push(read_function(&name, &path)?);
    }
    if functions.is_empty() {
        return Err(LocalError::Invalid(format!(
            "{} holds no function: each is a subdirectory with a {MANIFEST}",
            root.display()
        )));
    }
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_with_defaults_and_checked() {
        let root =
            std::env::temp_dir().join(format!("fresco-manifest-{}", uuid::Uuid::new_v4().simple()));
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(root.join(name)).expect("as in the test");
            std::fs::write(root.join(name).join(MANIFEST), text).expect("as in the test");
        };
        write(
            "hello",
            r#"{"runtime_image": "fresco/python3:dev", "handler": "main.handler",
                "environment": {"GREETING": "hi"}}"#,
        );
        write(
            "echo",
            r#"{"runtime_image": "fresco/provided:dev", "handler": "x", "memory_mb": 64,
                "timeout_s": 9, "package": "../code.zip"}"#,
        );
        std::fs::create_dir_all(root.join("not-a-function")).expect("as in the test");
        let functions = read_dir(&root).expect("as in the test");
        assert_eq!(functions.len(), 2);
        let (echo, hello) = (&functions[0], &functions[1]);
        assert_eq!(
            (
                echo.name.as_str(),
                echo.runtime_kind.as_str(),
                echo.memory_mb,
                echo.timeout_s
            ),
            ("echo", "provided", 64, 9)
        );
        assert_eq!(
            echo.code,
            Code::Package(root.join("echo").join("../code.zip"))
        );
        assert_eq!(
            (
                hello.runtime_kind.as_str(),
                hello.memory_mb,
                hello.timeout_s
            ),
            ("python", DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S)
        );
        assert_eq!(hello.environment["GREETING"], "hi");
        assert_eq!(
            hello.code,
            Code::Dir {
                path: root.join("hello"),
                skip: vec![MANIFEST.to_owned()]
            }
        );

        write(
            "typo",
            r#"{"runtime_image": "a/python", "handler": "h", "memory": 1}"#,
        );
        let error = read_dir(&root).expect_err("refused").to_string();
        assert!(error.contains("unknown field `memory`"), "{error}");
        write("typo", r#"{"runtime_image": "ubuntu", "handler": "h"}"#);
        let error = read_dir(&root).expect_err("refused").to_string();
        assert!(error.contains("cannot tell the runtime kind"), "{error}");
        std::fs::remove_dir_all(root.join("typo")).expect("as in the test");
        write(
            "bad name",
            r#"{"runtime_image": "a/python", "handler": "h"}"#,
        );
        assert!(read_dir(&root).is_err());
        std::fs::remove_dir_all(&root).expect("as in the test");
    }
}

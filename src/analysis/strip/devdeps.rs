//! Development-only packages (test runners, linters, type checkers, build tools)
//! installed next to the function, found by name and by what the function's own
//! `requirements-dev.txt` and `package.json` `devDependencies` list. What the
//! function declares it needs at run time is never one, whatever its name.

use std::collections::HashSet;

use crate::analysis::classify::{Classification, normalize_dist_name};
use crate::fsindex::FsIndex;

/// Python distributions that only serve development (PEP 503 names).
const DEV_PYTHON: &[&str] = &[
    "pytest",
    "pluggy",
    "iniconfig",
    "py",
    "coverage",
    "pytest-cov",
    "pytest-mock",
    "pytest-asyncio",
    "pytest-xdist",
    "pytest-timeout",
    "execnet",
    "mypy",
    "black",
    "flake8",
    "pyflakes",
    "pycodestyle",
    "mccabe",
    "pylint",
    "astroid",
    "isort",
    "ruff",
    "pre-commit",
    "tox",
    "nox",
    "hypothesis",
    "moto",
    "freezegun",
    "responses",
    "ipython",
    "ipdb",
    "sphinx",
    "wheel",
    "boto3-stubs",
    "botocore-stubs",
    "types-awscrt",
    "types-s3transfer",
    "bandit",
    "safety",
    "twine",
    "build",
    "virtualenv",
];

const DEV_NODE: &[&str] = &[
    "typescript",
    "jest",
    "ts-jest",
    "babel-jest",
    "ts-node",
    "eslint",
    "prettier",
    "nodemon",
    "mocha",
    "chai",
    "sinon",
    "vitest",
    "nyc",
    "webpack",
    "webpack-cli",
    "esbuild",
    "rollup",
    "serverless",
    "aws-cdk",
    "husky",
    "lint-staged",
    "@types",
    "@jest",
    "@typescript-eslint",
    "@vitest",
    "@eslint",
];

fn is_dev_python(key: &str, extra: &HashSet<String>) -> bool {
    DEV_PYTHON.contains(&key)
        || extra.contains(key)
        || key.starts_with("pytest-")
        || key.starts_with("types-")
        || key.ends_with("-stubs")
        || key.starts_with("mypy-boto3-")
        || key.starts_with("flake8-")
}

fn is_dev_node(name: &str, extra: &HashSet<String>) -> bool {
    let scope = name.split('/').next().unwrap_or(name);
    DEV_NODE.contains(&name)
        || DEV_NODE.contains(&scope)
        || extra.contains(name)
        || name.starts_with("eslint-")
        || name.starts_with("@types/")
}

/// Distribution names in a requirements file (PEP 503-normalized).
fn requirement_names(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            normalize_dist_name(&name)
        })
        .collect()
}

/// Paths belonging to development-only packages.
pub(super) fn dev_packages(index: &FsIndex, classes: &Classification) -> HashSet<String> {
    let root = &classes.task_root;
    let text = |name: &str| {
        index
            .get(&format!("{root}/{name}"))
            .and_then(|n| index.captured_text(n))
    };
    let mut extra_py = HashSet::new();
    for name in [
        "requirements-dev.txt",
        "dev-requirements.txt",
        "requirements_dev.txt",
    ] {
        if let Some(t) = text(name) {
            extra_py.extend(requirement_names(t));
        }
    }
    // What the function says it needs at run time is never a dev dependency,
    // whatever its name (a function may well depend on typescript or esbuild).
    let runtime_py = text("requirements.txt")
        .map(requirement_names)
        .unwrap_or_default();
    let mut extra_node = HashSet::new();
    let mut runtime_node = HashSet::new();
    if let Some(t) = text("package.json")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(t)
    {
        let keys = |field: &str| {
            v.get(field)
                .and_then(|d| d.as_object())
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        extra_node.extend(keys("devDependencies"));
        for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
            runtime_node.extend(keys(field));
        }
    }
    let mut out = HashSet::new();
    let mut dev_ids = HashSet::new();
    for (i, p) in classes.packages.iter().enumerate() {
        let dev = match p.ecosystem {
            "python" => is_dev_python(&p.key, &extra_py) && !runtime_py.contains(&p.key),
            _ => is_dev_node(&p.name, &extra_node) && !runtime_node.contains(&p.name),
        };
        if !dev {
            continue;
        }
        dev_ids.insert(i as u32);
        if p.ecosystem == "node" {
            out.insert(p.path.clone());
            out.extend(index.descendants(&p.path).map(|(d, _)| d.to_string()));
        }
    }
    for (path, id) in &classes.listed {
        if dev_ids.contains(id) {
            out.insert(path.clone());
            if let Some(n) = index.get(path)
                && n.is_dir()
            {
                out.extend(index.descendants(path).map(|(d, _)| d.to_string()));
            }
        }
    }
    // Python top-level package directories of dev distributions (e.g. `_pytest/`).
    for (path, n) in index.iter() {
        if n.is_dir()
            && let Some(&id) = classes.listed.get(&format!("{path}/__init__.py"))
            && dev_ids.contains(&id)
        {
            out.insert(path.to_string());
        }
    }
    out
}

//! Build-only seeds: packages whose only purpose is building software. A seed
//! that was installed by request is not a root of the runtime closure, so it
//! goes (with what only it needed) unless something kept needs it.
//!
//! Patterns are exact names, `prefix*` or `*suffix`; the first match names the
//! reason. Exceptions come first: they are never seeds.

/// Names that look like build tools but are runtime pieces other packages need.
const NOT_SEEDS: &[&str] = &["gcc-*-base", "cpp-*-base"];

pub const SEEDS: &[(&str, &str)] = &[
    (
        "build-essential",
        "meta-package that pulls in the C/C++ toolchain",
    ),
    ("gcc", "C compiler"),
    ("gcc-*", "C compiler (versioned or cross)"),
    ("g++", "C++ compiler"),
    ("g++-*", "C++ compiler (versioned or cross)"),
    ("cpp", "C preprocessor"),
    ("cpp-*", "C preprocessor (versioned)"),
    ("clang", "C/C++ compiler"),
    ("clang-*", "C/C++ compiler (versioned)"),
    ("gfortran", "Fortran compiler"),
    ("gfortran-*", "Fortran compiler (versioned)"),
    ("binutils", "assembler and linker"),
    ("binutils-*", "assembler and linker"),
    ("make", "build driver"),
    ("cmake", "build system generator"),
    ("cmake-data", "build system generator's modules"),
    ("ninja-build", "build driver"),
    ("meson", "build system"),
    ("scons", "build system"),
    ("pkg-config", "finds compiler flags of libraries"),
    ("pkgconf", "finds compiler flags of libraries"),
    ("pkgconf-bin", "finds compiler flags of libraries"),
    ("autoconf", "generates configure scripts"),
    ("automake", "generates Makefiles"),
    ("autotools-dev", "autotools support files"),
    ("libtool", "builds shared libraries portably"),
    ("libtool-bin", "builds shared libraries portably"),
    ("bison", "parser generator"),
    ("flex", "scanner generator"),
    ("swig", "binding generator"),
    ("nasm", "assembler"),
    ("yasm", "assembler"),
    ("ccache", "compiler cache"),
    ("patch", "applies source patches"),
    ("dpkg-dev", "Debian package building tools"),
    ("debhelper", "Debian package building tools"),
    ("fakeroot", "package building helper"),
    ("rpm-build", "RPM package building tools"),
    ("rpmdevtools", "RPM package building tools"),
    (
        "*-dev",
        "headers and link-time files for building against a library",
    ),
    (
        "*-devel",
        "headers and link-time files for building against a library",
    ),
    ("python3-pip", "installs Python packages at build time"),
    ("python3-pip-whl", "installs Python packages at build time"),
    ("python-pip", "installs Python packages at build time"),
    ("python3-venv", "creates build environments"),
    ("git", "fetches sources"),
    ("git-man", "fetches sources (manual)"),
    ("subversion", "fetches sources"),
    ("mercurial", "fetches sources"),
    ("golang", "Go compiler"),
    ("golang-*", "Go compiler (versioned)"),
    ("rustc", "Rust compiler"),
    ("cargo", "Rust build tool"),
];

fn matches(pattern: &str, name: &str) -> bool {
    if let Some(p) = pattern.strip_suffix('*').filter(|p| !p.starts_with('*')) {
        if let Some((pre, suf)) = p.split_once('*') {
            return name.starts_with(pre) && name[pre.len()..].ends_with(suf);
        }
        return name.starts_with(p);
    }
    if let Some(s) = pattern.strip_prefix('*') {
        return name.ends_with(s) && name.len() > s.len();
    }
    if let Some((pre, suf)) = pattern.split_once('*') {
        return name.len() >= pre.len() + suf.len() && name.starts_with(pre) && name.ends_with(suf);
    }
    pattern == name
}

/// Why `name` is a build-only package, if it is one.
pub fn seed_reason(name: &str) -> Option<&'static str> {
    if NOT_SEEDS.iter().any(|p| matches(p, name)) {
        return None;
    }
    SEEDS
        .iter()
        .find(|(p, _)| matches(p, name))
        .map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curated_names_and_patterns() {
        assert!(seed_reason("build-essential").is_some());
        assert!(seed_reason("gcc-12").is_some());
        assert!(seed_reason("libpython3.11-dev").is_some());
        assert!(seed_reason("python3-pip").is_some());
        assert_eq!(seed_reason("gcc-12-base"), None);
        assert_eq!(seed_reason("libstdc++6"), None);
        assert!(seed_reason("libstdc++-12-dev").is_some());
        assert_eq!(seed_reason("libpq5"), None);
        assert_eq!(seed_reason("ffmpeg"), None);
        assert_eq!(seed_reason("-dev"), None);
    }
}

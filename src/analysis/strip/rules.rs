//! The built-in strip rules as data: each has an id, a one-line reason, the profile
//! that enables it, the classes of files it may touch and its globs. The rules
//! that are not globs (dev dependencies, stale bytecode) are named here too, so
//! every rule id a report can show is in this file.

use serde::Serialize;

use crate::analysis::classify::Class;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Build-only OS packages, build toolchains, package caches, tests, dev
    /// dependencies, docs and man pages, VCS litter.
    #[default]
    Safe,
    /// Also locales, type stubs, source maps.
    Aggressive,
}

pub struct Rule {
    pub id: &'static str,
    pub reason: &'static str,
    pub profile: Profile,
    pub classes: &'static [Class],
    pub globs: &'static [&'static str],
}

/// Every class but `base`: what `--strip` globs and the general rules may touch.
pub(super) const NON_BASE: &[Class] = &[Class::System, Class::Deps, Class::Assets, Class::Code];
// Assets are task-root files too: a test's data file goes with its test suite.
const PACKAGES_AND_CODE: &[Class] = &[Class::Deps, Class::Assets, Class::Code];

/// The built-in rules, in priority order (the first that matches names the removal).
pub const RULES: &[Rule] = &[
    Rule {
        id: "vcs-editor-litter",
        reason: "version-control metadata and editor/tool leftovers are never used at run time",
        profile: Profile::Safe,
        classes: NON_BASE,
        globs: &[
            "**/.git",
            "**/.git/**",
            "**/.svn/**",
            "**/.hg/**",
            "**/.gitignore",
            "**/.gitattributes",
            "**/.DS_Store",
            "**/*.swp",
            "**/*.swo",
            "**/*~",
            "**/.idea/**",
            "**/.vscode/**",
            "**/.pytest_cache/**",
            "**/.pytest_cache",
            "**/.mypy_cache/**",
            "**/.mypy_cache",
            "**/.ruff_cache/**",
            "**/.tox/**",
            "**/.coverage",
            "**/.nyc_output/**",
        ],
    },
    Rule {
        id: "package-manager-cache",
        reason: "pip/npm/yarn/apt/dnf download caches and package lists are only used while installing",
        profile: Profile::Safe,
        classes: NON_BASE,
        globs: &[
            "/root/.cache/pip/**",
            "/home/*/.cache/pip/**",
            "**/.cache/pip/**",
            "/root/.cache/pypoetry/**",
            "/root/.npm/**",
            "/home/*/.npm/**",
            "**/.npm/_cacache/**",
            "/usr/local/share/.cache/yarn/**",
            "**/.cache/yarn/**",
            "/var/lib/apt/lists/**",
            "/var/cache/apt/**",
            "/var/cache/dnf/**",
            "/var/cache/yum/**",
            "/var/cache/debconf/*-old",
            "/var/lib/dpkg/*-old",
        ],
    },
    Rule {
        id: "build-toolchain",
        reason: "compilers, linkers, headers and static libraries only matter when building",
        profile: Profile::Safe,
        classes: &[Class::System],
        globs: &[
            "/usr/bin/gcc",
            "/usr/bin/gcc-*",
            "/usr/bin/g++",
            "/usr/bin/g++-*",
            "/usr/bin/c++",
            "/usr/bin/cc",
            "/usr/bin/c89*",
            "/usr/bin/c99*",
            "/usr/bin/cpp",
            "/usr/bin/cpp-*",
            "/usr/bin/gcov*",
            "/usr/bin/lto-dump*",
            // Triplet-prefixed names (x86_64-linux-gnu-gcc-12, aarch64-linux-gnu-ld.gold).
            "/usr/bin/*-linux-gnu-*",
            "/usr/bin/*-linux-gnu*-*",
            "/usr/bin/ld",
            "/usr/bin/ld.*",
            "/usr/bin/as",
            "/usr/bin/ar",
            "/usr/bin/ranlib",
            "/usr/bin/nm",
            "/usr/bin/objdump",
            "/usr/bin/objcopy",
            "/usr/bin/strip",
            "/usr/bin/readelf",
            "/usr/bin/addr2line",
            "/usr/bin/c++filt",
            "/usr/bin/elfedit",
            "/usr/bin/gprof*",
            "/usr/bin/gold",
            "/usr/bin/dwp",
            "/usr/bin/make",
            "/usr/bin/gmake",
            "/usr/bin/make-first-existing-target",
            "/usr/bin/cmake",
            "/usr/bin/ctest",
            "/usr/bin/cpack",
            "/usr/bin/pkg-config",
            "/usr/bin/pkgconf",
            "/usr/bin/*-pkg-config",
            "/usr/bin/dpkg-architecture",
            "/usr/bin/dpkg-buildflags",
            "/usr/lib/gcc/**",
            "/usr/libexec/gcc/**",
            "/usr/lib/gcc-cross/**",
            "/usr/include/**",
            "/usr/local/include/**",
            "/usr/share/cmake*/**",
            "/usr/lib/**/*.a",
            "/usr/lib64/**/*.a",
            "/usr/local/lib/**/*.a",
            "/usr/lib/*-linux-gnu/*crt*.o",
            "/usr/lib/**/pkgconfig/**",
            "/usr/share/pkgconfig/**",
            "/usr/lib/python3*/config-*/**",
            "/usr/lib/**/libbfd-*.so",
            "/usr/lib/**/libopcodes-*.so",
            "/usr/lib/**/libctf*.so*",
            "/usr/lib/**/libsframe.so*",
            "/usr/lib/**/libgprofng.so*",
            "/usr/lib/**/libasan.so*",
            "/usr/lib/**/libtsan.so*",
            "/usr/lib/**/liblsan.so*",
            "/usr/lib/**/libubsan.so*",
            "/usr/lib/**/libhwasan.so*",
            "/usr/lib/**/libcc1.so*",
            "/usr/share/perl5/Dpkg/**",
            "/usr/share/dpkg/*.mk",
        ],
    },
    Rule {
        id: "tests",
        reason: "test suites shipped inside packages and the function's own tests are not run in Lambda",
        profile: Profile::Safe,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/tests/**",
            "**/tests",
            "**/__tests__/**",
            "**/__tests__",
            "**/conftest.py",
            // A directory named test inside a package, not a package named "test".
            "**/node_modules/*/**/test/**",
            "**/node_modules/*/**/test",
            "**/*.test.js",
            "**/*.test.ts",
            "**/*.test.mjs",
            "**/*.spec.js",
            "**/*.spec.ts",
        ],
    },
    Rule {
        id: "tests",
        reason: "test suites shipped inside packages and the function's own tests are not run in Lambda",
        profile: Profile::Safe,
        classes: &[Class::Code, Class::Assets],
        // pytest's file convention; not `*_test.py`, which runtime modules use
        // (`ab_test.py`).
        globs: &["**/test_*.py", "**/test/**", "**/test"],
    },
    Rule {
        id: "docs",
        reason: "documentation, man and info pages are never read by a function",
        profile: Profile::Safe,
        classes: &[Class::System],
        globs: &[
            "/usr/share/doc/**",
            "/usr/share/man/**",
            "/usr/share/info/**",
            "/usr/share/gtk-doc/**",
            "/usr/local/share/man/**",
        ],
    },
    Rule {
        id: "docs",
        reason: "documentation, man and info pages are never read by a function",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &["**/node_modules/**/*.md"],
    },
    Rule {
        id: "locales",
        reason: "message translations: a function answers in one language",
        profile: Profile::Aggressive,
        classes: NON_BASE,
        globs: &["/usr/share/locale/**"],
    },
    Rule {
        id: "type-stubs",
        reason: "type stubs are only read by type checkers and editors",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/*.pyi",
            "**/node_modules/**/*.d.ts",
            "**/node_modules/**/*.d.mts",
            "**/node_modules/**/*.d.cts",
        ],
    },
    Rule {
        id: "source-maps",
        reason: "source maps only help debuggers",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/*.js.map",
            "**/*.mjs.map",
            "**/*.cjs.map",
            "**/*.css.map",
        ],
    },
];

pub const DEV_DEPENDENCIES: (&str, &str) = (
    "dev-dependencies",
    "test runners, linters, type checkers and build tools installed next to the function",
);
pub const STALE_BYTECODE: (&str, &str) = (
    "stale-bytecode",
    "bytecode for a Python version the image does not run is never loaded",
);

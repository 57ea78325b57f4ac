//! Generates the C header from `src/capi` with cbindgen into `$OUT_DIR/cluster.h`, and gives
//! the cdylib its ABI identity (`link_abi`). The header is written only when its content
//! changed (house style 13, P9).
//!
//! A build never writes into the source tree (a read-only or vendored source must build):
//! the committed `include/cluster.h` is replaced from `$OUT_DIR` only when asked, by
//! `make header` (`scripts/header write`), and `make check-header` (part of `make test`)
//! fails when it differs from what this build script generates.

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros());
    let bindings = match cbindgen::Builder::new().with_crate(&dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => panic!("cbindgen: {e}"),
    };
    bindings.write_to_file(out_dir.join("cluster.h"));
    link_abi(&out_dir);
}

/// The ABI major version: the `N` of the SONAME `libcluster.so.N`. It changes only when a
/// release breaks the ABI (a removed or changed function or struct layout), not with the
/// crate's version.
const ABI_MAJOR: u32 = 0;

/// `CLUSTER_VERSION_MAJOR/MINOR/PATCH`, from Cargo.toml's version (what `cluster_version()`
/// returns at run time is built from the same numbers, in `src/capi/version.rs`).
fn version_macros() -> String {
    let part = |name: &str| -> u32 {
        let v = std::env::var(format!("CARGO_PKG_VERSION_{name}")).expect("CARGO_PKG_VERSION_*");
        v.parse().unwrap_or_else(|_| panic!("CARGO_PKG_VERSION_{name} {v:?} is not a number"))
    };
    let (major, minor, patch) = (part("MAJOR"), part("MINOR"), part("PATCH"));
    assert!(minor < 100 && patch < 100, "CLUSTER_VERSION needs minor and patch below 100");
    // Plain integer literals: the Python binding reads the header's #defines at load time.
    format!(
        "\n/*\n The version of libcluster this header belongs to (Cargo.toml's), and the same as one\n \
         number, MAJOR * 10000 + MINOR * 100 + PATCH: what `cluster_version()` returns for the\n \
         loaded library.\n */\n\
         #define CLUSTER_VERSION_MAJOR {major}\n\
         #define CLUSTER_VERSION_MINOR {minor}\n\
         #define CLUSTER_VERSION_PATCH {patch}\n\
         #define CLUSTER_VERSION {}",
        major * 10000 + minor * 100 + patch
    )
}

/// The shared library's ABI identity on Linux: the SONAME `libcluster.so.<ABI_MAJOR>`.
///
/// No version script: rustc already passes one of its own (anonymous: every `#[no_mangle]`
/// symbol global, `local: *`), so the cdylib exports exactly its `#[no_mangle]` functions,
/// and a second script cannot narrow that (ld lets rustc's exact names win over a `local: *`
/// wildcard; a named tag such as `LIBCLUSTER_0 { global: cluster_*; local: *; };` links but
/// binds no symbol to it: they stay unversioned). That the exports are `cluster_*` only is
/// checked instead: scripts/check-abi (every `#[no_mangle]` is a `cluster_` function) and
/// tests/install.rs (the installed library's dynamic symbols are the header's functions).
///
/// A program linked with `-lcluster` records the SONAME as DT_NEEDED, so the loader looks for
/// `libcluster.so.<N>`: a relative symlink `libcluster.so.<N> -> libcluster.so` is made beside
/// the cdylib in cargo's output directory (`<target>/<profile>/`, found from OUT_DIR), so the
/// C tests, the examples and the Node addon's development build, linked there with
/// `-L<dir> -lcluster` (or `-l:libcluster.so`) and an rpath, load the library as before.
fn link_abi(out_dir: &std::path::Path) {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let soname = format!("libcluster.so.{ABI_MAJOR}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    // OUT_DIR is <target>/<profile>/build/libcluster-<hash>/out.
    let build_dir = out_dir.ancestors().nth(2);
    let Some(profile_dir) = build_dir.filter(|d| d.file_name() == Some("build".as_ref())).and_then(|d| d.parent()) else {
        println!("cargo:warning=OUT_DIR {} is not <target>/<profile>/build/<pkg>/out: no {soname} link", out_dir.display());
        return;
    };
    let link = profile_dir.join(&soname);
    let target = std::path::Path::new("libcluster.so");
    if std::fs::read_link(&link).ok().as_deref() == Some(target) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(target, &link) {
        println!("cargo:warning=could not create {}: {e}", link.display());
    }
}

//! Generates `include/cluster.h` from `src/capi` with cbindgen. Nothing else.
//! The header is written only when its content changed (house style 13, P9).

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let bindings = match cbindgen::Builder::new().with_crate(&dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => panic!("cbindgen: {e}"),
    };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("cluster.h");
    bindings.write_to_file(&out);
    if std::env::var_os("LIBCLUSTER_NO_HEADER_COPY").is_none() {
        bindings.write_to_file(format!("{dir}/include/cluster.h"));
    }
}

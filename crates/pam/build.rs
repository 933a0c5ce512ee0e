//! Links the unwinder statically (libgcc_eh.a, as `gcc -static-libgcc` does) so that the
//! module does not pull libgcc_s.so.1 into every login process: loading libgcc_s.so.1 cost
//! each pam_start more than loading the module itself (BENCHMARKS.md). Placed before std's
//! `-lgcc_s` on the link line, the archive provides every `_Unwind_*` symbol and the linker's
//! `--as-needed` then drops libgcc_s; `catch_unwind` in lib.rs unwinds with this copy.
//! A test (tests/priv_pam.rs) checks the module needs no libgcc_s and still catches a panic.
//! Only glibc targets link libgcc_s: on musl (Alpine, Void's musl flavour) std links its own
//! unwinder statically already, and a second one could clash with it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}

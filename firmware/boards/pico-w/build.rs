//! Linker setup for the RP2040, and the build-time settings.
//!
//! * `memory.x` goes where cortex-m-rt's `link.x` finds it; the link
//!   arguments are set here (not in `.cargo/config.toml`) so a `RUSTFLAGS`
//!   from the environment cannot drop them.
//! * `CYW43_FIRMWARE_DIR`, when set, must hold `43439A0.bin` and
//!   `43439A0_clm.bin`; the firmware then embeds those instead of the blobs
//!   of the `cyw43-firmware` crate.
//! * The settings read with `option_env!` in `src/settings.rs` are declared
//!   here too, so changing one rebuilds the firmware.
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    for arg in ["--nmagic", "-Tlink.x", "-Tlink-rp.x", "-Tdefmt.x"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo::rustc-check-cfg=cfg(custom_cyw43_firmware)");
    println!("cargo:rerun-if-env-changed=CYW43_FIRMWARE_DIR");
    if let Some(dir) = std::env::var_os("CYW43_FIRMWARE_DIR") {
        let dir = PathBuf::from(dir);
        for (file, var) in [
            ("43439A0.bin", "CYW43_FW"),
            ("43439A0_clm.bin", "CYW43_CLM"),
        ] {
            let path = dir.join(file);
            if !path.is_file() {
                panic!(
                    "CYW43_FIRMWARE_DIR={} has no {file} (see firmware/README.md for where to get it)",
                    dir.display()
                );
            }
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rustc-env={var}={}", path.display());
        }
        println!("cargo:rustc-cfg=custom_cyw43_firmware");
    }
    for var in [
        "TETHER_WIFI_SSID",
        "TETHER_WIFI_PASSWORD",
        "TETHER_GATEWAY",
        "TETHER_DEVICE_ID",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

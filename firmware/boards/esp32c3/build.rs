//! Link with esp-hal's `linkall.x` (here rather than in `.cargo/config.toml`,
//! so a `RUSTFLAGS` from the environment cannot drop it), and rebuild when a
//! build-time setting changes.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "TETHER_WIFI_SSID",
        "TETHER_WIFI_PASSWORD",
        "TETHER_GATEWAY",
        "TETHER_DEVICE_ID",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

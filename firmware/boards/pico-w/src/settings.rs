//! Build-time settings, from environment variables so that credentials never
//! live in source. Every one has a placeholder default so the example builds
//! in CI without secrets; a device built with the placeholders says so at
//! boot. A malformed value is a compile error naming the variable.

/// Wi-Fi network name (`TETHER_WIFI_SSID`).
pub const SSID: &str = match option_env!("TETHER_WIFI_SSID") {
    Some(s) => s,
    None => "tether-demo",
};

/// Wi-Fi passphrase (`TETHER_WIFI_PASSWORD`; empty joins an open network).
pub const PASSWORD: &str = match option_env!("TETHER_WIFI_PASSWORD") {
    Some(s) => s,
    None => "",
};

/// MQTT client id and the `{device}` topic level (`TETHER_DEVICE_ID`).
pub const DEVICE_ID: &str = match option_env!("TETHER_DEVICE_ID") {
    Some(s) => check_device_id(s),
    None => "pico-w-1",
};

/// The gateway's MQTT listener (`TETHER_GATEWAY`, `a.b.c.d:port`).
pub const GATEWAY: ([u8; 4], u16) = parse_gateway(match option_env!("TETHER_GATEWAY") {
    Some(s) => s,
    None => "192.168.4.1:1883",
});

/// Whether the network or gateway settings are the placeholders.
pub const PLACEHOLDERS: bool =
    option_env!("TETHER_WIFI_SSID").is_none() || option_env!("TETHER_GATEWAY").is_none();

const fn check_device_id(id: &str) -> &str {
    let b = id.as_bytes();
    if b.is_empty() {
        panic!("TETHER_DEVICE_ID must not be empty");
    }
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'/' | b'+' | b'#' | 0) {
            panic!("TETHER_DEVICE_ID must be one topic level: no '/', '+' or '#'");
        }
        i += 1;
    }
    id
}

/// Parses `a.b.c.d:port` at compile time.
const fn parse_gateway(s: &str) -> ([u8; 4], u16) {
    const USAGE: &str = "TETHER_GATEWAY must be an IPv4 address and port, e.g. 192.168.1.10:1883";
    let b = s.as_bytes();
    let mut ip = [0u8; 4];
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            value = value * 10 + (c - b'0') as u32;
            digits += 1;
            if digits > 5 {
                panic!("{}", USAGE);
            }
        } else if (c == b'.' && part < 3) || (c == b':' && part == 3) {
            if digits == 0 || value > 255 {
                panic!("{}", USAGE);
            }
            ip[part] = value as u8;
            part += 1;
            value = 0;
            digits = 0;
        } else {
            panic!("{}", USAGE);
        }
        i += 1;
    }
    if part != 4 || digits == 0 || value == 0 || value > 65_535 {
        panic!("{}", USAGE);
    }
    (ip, value as u16)
}

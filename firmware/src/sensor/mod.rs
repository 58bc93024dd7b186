//! The sensor layer: what a device measures and how it is reported.
//!
//! * [`bme280`]: a Bosch BME280 driver on `embedded-hal` 1.0 `I2c` + `DelayNs`,
//!   with the datasheet's integer compensation (no floating point, which
//!   Cortex-M0+ and RV32IMC would emulate in software).
//! * [`sim`]: a simulated BME280 on a fake I²C bus, for emulators and tests:
//!   the real driver runs against it unchanged.
//! * [`telemetry`]: the topics the gateway's examples and rules use and the
//!   compact JSON of a reading, written into a caller's buffer.
//!
//! Why not the `bme280` crate: it supports embedded-hal 1.0 and `no_std`, but
//! compensates in `f32` and reports floats, which would pull software floating
//! point and float formatting into every build for the M0+ and RV32IMC
//! targets; the integer formulas are a page of code and exact.

pub mod bme280;
pub mod sim;
pub mod telemetry;

/// One compensated measurement, in fixed point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// Temperature in hundredths of a degree Celsius (2153 is 21.53 °C).
    pub temperature_centi_c: i32,
    /// Relative humidity in thousandths of a percent (40123 is 40.123 %RH).
    pub humidity_milli_pct: u32,
    /// Pressure in pascals (101320 is 1013.20 hPa).
    pub pressure_pa: u32,
}

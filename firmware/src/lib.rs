//! `tether-firmware`: a `no_std` MQTT publisher for microcontrollers.
//!
//! This crate is a placeholder until the firmware issue lands: it exists so the
//! workspace has its final shape and so that `tether-protocols` is proven to
//! build without `std` from a downstream crate.
#![no_std]

/// The MQTT codec the firmware will speak, re-exported so board crates need one dependency.
pub use tether_protocols as protocols;

//! Footprint probe: links the client core the way a device uses it — a
//! `Client` with a 32-reading outbox of 128-byte slots, 256-byte receive and
//! transmit buffers, all in static memory, driven by the blocking driver over
//! a transport whose bytes the optimiser cannot predict (`black_box`) — so
//! that nothing is optimised away and nothing unrelated is linked in.
//!
//! It never runs; `scripts/firmware-footprint` measures the ELF.
#![no_std]
#![no_main]

use core::cell::UnsafeCell;
use core::hint::black_box;
use core::mem::MaybeUninit;

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use tether_firmware::client::{Client, Config, Event};
use tether_firmware::driver::{Blocking, Clock};
use tether_firmware::protocols::mqtt::QoS;

/// Readings kept while offline.
const READINGS: usize = 32;
/// Bytes of topic + payload per reading.
const SLOT: usize = 128;

const CONFIG: Config<'static> = Config::new("footprint-device")
    .with_commands("devices/footprint-device/cmd")
    .with_credentials("device", b"password");

/// A transport whose every answer is opaque to the optimiser.
struct Opaque;

impl ErrorType for Opaque {
    type Error = ErrorKind;
}

impl Read for Opaque {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = black_box(buf.len());
        for b in buf.iter_mut().take(n) {
            *b = black_box(0);
        }
        Ok(n)
    }
}

impl ReadReady for Opaque {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(black_box(true))
    }
}

impl Write for Opaque {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        black_box(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct Ticks;

impl Clock for Ticks {
    fn now_ms(&self) -> u64 {
        black_box(0)
    }
}

struct Delay;

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        black_box(ns);
    }
}

/// The device's static memory: buffers and the client, in `.bss`.
struct Statics {
    rx: UnsafeCell<[u8; 256]>,
    tx: UnsafeCell<[u8; 256]>,
    client: UnsafeCell<MaybeUninit<Client<'static, READINGS, SLOT>>>,
}

// SAFETY: only `_start` touches `STATICS`, once, on one core, with no
// interrupts: there is never concurrent access.
unsafe impl Sync for Statics {}

static STATICS: Statics = Statics {
    rx: UnsafeCell::new([0; 256]),
    tx: UnsafeCell::new([0; 256]),
    client: UnsafeCell::new(MaybeUninit::uninit()),
};

#[cfg(feature = "sensor")]
fn reading(seq: u32, topic: &mut [u8], payload: &mut [u8]) -> (usize, usize) {
    use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY, Bme280};
    use tether_firmware::sensor::sim::SimulatedBme280;
    use tether_firmware::sensor::telemetry::{Telemetry, telemetry_topic};
    let Ok(mut sensor) = Bme280::new(
        SimulatedBme280::new(ADDRESS_PRIMARY),
        ADDRESS_PRIMARY,
        &mut Delay,
    ) else {
        return (0, 0);
    };
    let Ok(reading) = sensor.measure(&mut Delay) else {
        return (0, 0);
    };
    let t = telemetry_topic("footprint-device", topic).map_or(0, str::len);
    let p = Telemetry {
        device: "footprint-device",
        reading,
        seq,
    }
    .write_json(payload)
    .unwrap_or(0);
    (t, p)
}

/// Entry point (the probe is linked, never run).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    // SAFETY: `_start` runs once, so these are the only references to the
    // cells' contents (see `Statics`).
    let (rx, tx, slot) = unsafe {
        (
            &mut *STATICS.rx.get(),
            &mut *STATICS.tx.get(),
            &mut *STATICS.client.get(),
        )
    };
    let client = slot.write(Client::new(CONFIG, rx));
    let mut driver = Blocking::new(tx);
    let mut io = Opaque;
    let mut seq = 0u32;
    loop {
        let now = Ticks.now_ms();
        if client.reconnect_at().is_some_and(|at| now >= at) {
            client.on_transport_open(now);
        }
        #[cfg(feature = "sensor")]
        {
            let mut topic = [0u8; 48];
            let mut payload = [0u8; 100];
            let (t, p) = reading(seq, &mut topic, &mut payload);
            let topic = core::str::from_utf8(&topic[..t]).unwrap_or("sensors/x/telemetry");
            black_box(client.publish(topic, &payload[..p], QoS::AtLeastOnce)).ok();
        }
        #[cfg(not(feature = "sensor"))]
        {
            let payload = black_box([b'0' + (seq % 10) as u8; 80]);
            black_box(client.publish(
                "sensors/footprint-device/telemetry",
                &payload,
                QoS::AtLeastOnce,
            ))
            .ok();
        }
        seq = seq.wrapping_add(1);
        match driver.poll(client, &mut io, &Ticks, &mut Delay, now + 1_000) {
            Ok(Some(Event::Command(c))) => {
                black_box(c.payload);
            }
            Ok(Some(e)) => {
                black_box(&e);
            }
            Ok(None) => {}
            Err(_) => {
                black_box(driver.disconnect(client, &mut io, &Ticks)).ok();
            }
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

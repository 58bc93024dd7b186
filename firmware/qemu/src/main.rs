//! The emulated device: `tether-firmware` on QEMU's lm3s6965evb.
//!
//! It reads a simulated BME280 (the real driver on a simulated I²C bus),
//! formats each reading as JSON telemetry, and publishes it at QoS 1 on
//! `sensors/qemu-1/telemetry` through the blocking driver over UART0, which
//! QEMU connects to the gateway's MQTT port. Readings are taken from power-on,
//! so the first ones wait in the outbox until the session is up. Once all
//! [`READINGS`] are acknowledged it sends DISCONNECT and exits QEMU through
//! semihosting: status 0 on success, 1 (with the reason on QEMU's stdout)
//! otherwise.
#![no_std]
#![no_main]

mod time;
mod uart;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use tether_firmware::client::{Client, Config, Event};
use tether_firmware::driver::{Blocking, Clock};
use tether_firmware::protocols::mqtt::QoS;
use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY, Bme280};
use tether_firmware::sensor::sim::SimulatedBme280;
use tether_firmware::sensor::telemetry::{Telemetry, command_topic, telemetry_topic};

use time::{Delay, Millis};
use uart::Uart0;

/// The device id (and MQTT client id).
const DEVICE: &str = "qemu-1";
/// How many readings to publish before exiting.
const READINGS: u32 = 5;
/// Time between readings.
const INTERVAL_MS: u64 = 200;
/// Give up (and fail) after this long.
const DEADLINE_MS: u64 = 30_000;

#[entry]
fn main() -> ! {
    let status = match cortex_m::Peripherals::take() {
        Some(cp) => {
            time::start(cp.SYST);
            let mut uart = Uart0::take();
            match run(&mut uart) {
                Ok(()) => {
                    hprintln!("qemu-device: published {} readings", READINGS);
                    debug::EXIT_SUCCESS
                }
                Err(why) => {
                    hprintln!("qemu-device: {}", why);
                    debug::EXIT_FAILURE
                }
            }
        }
        None => debug::EXIT_FAILURE,
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run(uart: &mut Uart0) -> Result<(), &'static str> {
    let clock = Millis;
    let mut delay = Delay;
    let mut sensor = Bme280::new(
        SimulatedBme280::new(ADDRESS_PRIMARY),
        ADDRESS_PRIMARY,
        &mut delay,
    )
    .map_err(|_| "BME280 not found")?;

    let mut topic_buf = [0u8; 40];
    let topic = telemetry_topic(DEVICE, &mut topic_buf).map_err(|_| "topic")?;
    let mut cmd_buf = [0u8; 40];
    let commands = command_topic(DEVICE, &mut cmd_buf).map_err(|_| "topic")?;

    let mut rx = [0u8; 256];
    let mut tx = [0u8; 256];
    let config = Config::new(DEVICE)
        .with_commands(commands)
        .with_keep_alive(30)
        .with_clean_session(true);
    let mut client: Client<'_, 16, 128> = Client::new(config, &mut rx);
    let mut driver = Blocking::new(&mut tx);

    // The UART is the transport, up from power-on.
    client.on_transport_open(clock.now_ms());
    let deadline = clock.now_ms() + DEADLINE_MS;
    let mut seq = 0;
    let mut next_reading = clock.now_ms();
    loop {
        let now = clock.now_ms();
        if now >= deadline {
            return Err("timed out before every reading was acknowledged");
        }
        if seq < READINGS && now >= next_reading {
            let reading = sensor
                .measure(&mut delay)
                .map_err(|_| "BME280 read failed")?;
            let mut payload = [0u8; 100];
            let n = Telemetry {
                device: DEVICE,
                reading,
                seq,
            }
            .write_json(&mut payload)
            .map_err(|_| "payload too long")?;
            client
                .publish(topic, &payload[..n], QoS::AtLeastOnce)
                .map_err(|_| "outbox refused the reading")?;
            seq += 1;
            next_reading = now + INTERVAL_MS;
        }
        if seq == READINGS && client.is_idle() {
            driver
                .disconnect(&mut client, uart, &clock)
                .map_err(|_| "DISCONNECT failed")?;
            return Ok(());
        }
        let until = next_reading.min(now + 1_000);
        match driver.poll(&mut client, uart, &clock, &mut delay, until) {
            Ok(Some(Event::Connected { session_present })) => {
                hprintln!(
                    "qemu-device: connected (session present: {})",
                    session_present
                );
            }
            Ok(Some(Event::Command(c))) => {
                hprintln!(
                    "qemu-device: command of {} bytes on {}",
                    c.payload.len(),
                    c.topic
                );
            }
            Ok(_) => {}
            Err(_) => return Err("connection to the gateway lost"),
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("qemu-device: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

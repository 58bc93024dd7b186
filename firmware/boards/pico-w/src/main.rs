//! Raspberry Pi Pico W publishing BME280 readings to a Tether gateway.
//!
//! * Wi-Fi: the CYW43439 through cyw43 + cyw43-pio (PIO SPI), IP through
//!   embassy-net with DHCP.
//! * Sensor: a BME280 on I2C0 (SDA GP4, SCL GP5, address 0x76). Without one
//!   the simulated BME280 stands in, so the example runs on a bare board.
//! * MQTT: tether-firmware's client core and async driver over an
//!   embassy-net `TcpSocket`. A reading every 10 s goes to
//!   `sensors/{device}/telemetry` at QoS 1; up to 32 wait in the outbox while
//!   Wi-Fi or the gateway is down and drain in order afterwards. Commands on
//!   `devices/{device}/cmd`: `on` / `off` switch the on-board LED.
//!
//! Settings come from build-time environment variables (`src/settings.rs`).
#![no_std]
#![no_main]

mod nvram;
mod settings;

use cyw43::{A4, Aligned, JoinOptions};
use cyw43_pio::{DEFAULT_CLOCK_DIVIDER, PioSpi};
use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, IpEndpoint, StackResources};
use embassy_rp::bind_interrupts;
use embassy_rp::clocks::RoscRng;
use embassy_rp::dma::{self, Channel as DmaChannel};
use embassy_rp::gpio::{Level, Output};
use embassy_rp::i2c::{self, I2c};
use embassy_rp::peripherals::{DMA_CH0, I2C0, PIO0};
use embassy_rp::pio::{self, Pio};
use embassy_time::{Delay, Duration, Instant, Timer};
use static_cell::StaticCell;
use tether_firmware::client::{Client, Config, Event};
use tether_firmware::driver::{Async, Clock};
use tether_firmware::protocols::mqtt::QoS;
use tether_firmware::sensor::Reading;
use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY, Bme280};
use tether_firmware::sensor::sim::SimulatedBme280;
use tether_firmware::sensor::telemetry::{Telemetry, command_topic, telemetry_topic};
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

/// Readings kept while offline, and bytes of topic + payload per reading.
const OUTBOX: usize = 32;
const SLOT: usize = 160;
/// Time between readings.
const INTERVAL: Duration = Duration::from_secs(10);

#[cfg(not(custom_cyw43_firmware))]
static FIRMWARE: &Aligned<A4, [u8]> = &Aligned(*cyw43_firmware::CYW43_43439A0);
#[cfg(not(custom_cyw43_firmware))]
static CLM: &[u8] = cyw43_firmware::CYW43_43439A0_CLM;
#[cfg(custom_cyw43_firmware)]
static FIRMWARE: &Aligned<A4, [u8]> = &Aligned(*include_bytes!(env!("CYW43_FW")));
#[cfg(custom_cyw43_firmware)]
static CLM: &[u8] = include_bytes!(env!("CYW43_CLM"));

type WifiSpi = PioSpi<'static, PIO0, 0>;

#[embassy_executor::task]
async fn wifi_task(runner: cyw43::Runner<'static, cyw43::SpiBus<Output<'static>, WifiSpi>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, cyw43::NetDriver<'static>>) -> ! {
    runner.run().await
}

/// tether-firmware's clock: embassy-time's uptime.
struct Uptime;

impl Clock for Uptime {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }
}

/// The BME280 on I2C0, or the simulated one when none answers.
enum Sensor {
    Real(Bme280<I2c<'static, I2C0, i2c::Blocking>>),
    Simulated(Bme280<SimulatedBme280>),
}

impl Sensor {
    fn measure(&mut self) -> Option<Reading> {
        match self {
            Self::Real(s) => s.measure(&mut Delay).ok(),
            Self::Simulated(s) => s.measure(&mut Delay).ok(),
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    info!(
        "tether-pico-w: device {}, gateway {}",
        settings::DEVICE_ID,
        settings::GATEWAY.0
    );
    if settings::PLACEHOLDERS {
        warn!("built without TETHER_WIFI_SSID / TETHER_GATEWAY: using placeholders");
    }

    // Wi-Fi chip: power on GP23, SPI over PIO0 on GP24 (data) / GP29 (clock), CS on GP25.
    let pwr = Output::new(p.PIN_23, Level::Low);
    let cs = Output::new(p.PIN_25, Level::High);
    let mut pio = Pio::new(p.PIO0, Irqs);
    let spi = PioSpi::new(
        &mut pio.common,
        pio.sm0,
        DEFAULT_CLOCK_DIVIDER,
        pio.irq0,
        cs,
        p.PIN_24,
        p.PIN_29,
        DmaChannel::new(p.DMA_CH0, Irqs),
    );
    static WIFI: StaticCell<cyw43::State> = StaticCell::new();
    let (net_device, mut control, runner) = cyw43::new(
        WIFI.init(cyw43::State::new()),
        pwr,
        spi,
        FIRMWARE,
        nvram::NVRAM,
    )
    .await;
    spawner.spawn(unwrap!(wifi_task(runner)));
    control.init(CLM).await;
    control
        .set_power_management(cyw43::PowerManagementMode::PowerSave)
        .await;

    let mut rng = RoscRng;
    static NET: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        net_device,
        embassy_net::Config::dhcpv4(Default::default()),
        NET.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(unwrap!(net_task(runner)));

    while let Err(e) = control
        .join(
            settings::SSID,
            JoinOptions::new(settings::PASSWORD.as_bytes()),
        )
        .await
    {
        warn!("joining {} failed: {}; retrying", settings::SSID, e);
        Timer::after_secs(2).await;
    }
    info!("joined {}; waiting for DHCP", settings::SSID);
    stack.wait_config_up().await;

    let i2c = I2c::new_blocking(p.I2C0, p.PIN_5, p.PIN_4, i2c::Config::default());
    let mut sensor = match Bme280::new(i2c, ADDRESS_PRIMARY, &mut Delay) {
        Ok(s) => Sensor::Real(s),
        Err(_) => {
            warn!("no BME280 on I2C0 (GP4/GP5): using the simulated sensor");
            match Bme280::new(
                SimulatedBme280::new(ADDRESS_PRIMARY),
                ADDRESS_PRIMARY,
                &mut Delay,
            ) {
                Ok(s) => Sensor::Simulated(s),
                Err(_) => defmt::panic!("simulated BME280 failed"),
            }
        }
    };

    static TOPIC: StaticCell<[u8; 64]> = StaticCell::new();
    static COMMANDS: StaticCell<[u8; 64]> = StaticCell::new();
    let topic = unwrap!(telemetry_topic(settings::DEVICE_ID, TOPIC.init([0; 64])).ok());
    let commands = unwrap!(command_topic(settings::DEVICE_ID, COMMANDS.init([0; 64])).ok());

    static RX: StaticCell<[u8; 512]> = StaticCell::new();
    static TX: StaticCell<[u8; 512]> = StaticCell::new();
    let config = Config::new(settings::DEVICE_ID)
        .with_commands(commands)
        .with_keep_alive(60)
        .with_jitter_seed(rng.next_u32());
    let mut client: Client<'static, OUTBOX, SLOT> = Client::new(config, RX.init([0; 512]));
    let mut driver = Async::new(TX.init([0; 512]));

    let (ip, port) = settings::GATEWAY;
    let gateway = IpEndpoint::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), port);
    let mut socket_rx = [0u8; 1024];
    let mut socket_tx = [0u8; 1024];
    let mut seq = 0u32;
    let mut next_reading = Instant::now();

    loop {
        // Offline: keep measuring until the backoff allows another attempt.
        while let Some(at) = client.reconnect_at() {
            let at = Instant::from_millis(at);
            if Instant::now() >= at {
                break;
            }
            Timer::at(at.min(next_reading)).await;
            take_reading(&mut sensor, &mut client, topic, &mut seq, &mut next_reading);
        }

        let mut socket = TcpSocket::new(stack, &mut socket_rx, &mut socket_tx);
        socket.set_timeout(Some(Duration::from_secs(90)));
        if let Err(e) = socket.connect(gateway).await {
            warn!("cannot reach the gateway: {}", e);
            client.on_transport_closed(Uptime.now_ms());
            continue;
        }
        client.on_transport_open(Uptime.now_ms());

        loop {
            take_reading(&mut sensor, &mut client, topic, &mut seq, &mut next_reading);
            let until = next_reading.as_millis();
            match driver
                .poll(&mut client, &mut socket, &Uptime, &mut Delay, until)
                .await
            {
                Ok(Some(Event::Connected { session_present })) => {
                    info!("connected (session present: {})", session_present);
                }
                Ok(Some(Event::Delivered { packet_id })) => {
                    info!("reading {} delivered", packet_id)
                }
                Ok(Some(Event::Command(c))) => {
                    let on = match c.payload {
                        b"on" => Some(true),
                        b"off" => Some(false),
                        _ => None,
                    };
                    match on {
                        Some(on) => control.gpio_set(0, on).await,
                        None => warn!("unknown command of {} bytes", c.payload.len()),
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    warn!(
                        "connection lost; {} readings wait in the outbox",
                        client.outbox().len()
                    );
                    break;
                }
            }
        }
        socket.abort();
        let _ = socket.flush().await;
    }
}

/// Measures and queues a reading when one is due.
fn take_reading(
    sensor: &mut Sensor,
    client: &mut Client<'static, OUTBOX, SLOT>,
    topic: &str,
    seq: &mut u32,
    next_reading: &mut Instant,
) {
    if Instant::now() < *next_reading {
        return;
    }
    *next_reading += INTERVAL;
    let Some(reading) = sensor.measure() else {
        warn!("BME280 read failed");
        return;
    };
    let mut payload = [0u8; 128];
    let telemetry = Telemetry {
        device: settings::DEVICE_ID,
        reading,
        seq: *seq,
    };
    if let Ok(n) = telemetry.write_json(&mut payload)
        && client
            .publish(topic, &payload[..n], QoS::AtLeastOnce)
            .is_ok()
    {
        *seq = seq.wrapping_add(1);
    }
}

//! ESP32-C3 publishing BME280 readings to a Tether gateway.
//!
//! * Wi-Fi: esp-radio (station mode, WPA2) under the esp-rtos scheduler, IP
//!   through embassy-net with DHCP. The radio stack needs a heap (esp-alloc);
//!   tether-firmware itself allocates nothing.
//! * Sensor: a BME280 on I2C0 (SDA GPIO4, SCL GPIO5, address 0x76). Without
//!   one the simulated BME280 stands in, so the example runs on a bare board.
//! * MQTT: tether-firmware's client core and async driver over an
//!   embassy-net `TcpSocket`. A reading every 10 s goes to
//!   `sensors/{device}/telemetry` at QoS 1; up to 32 wait in the outbox while
//!   Wi-Fi or the gateway is down and drain in order afterwards. Commands on
//!   `devices/{device}/cmd` are logged.
//!
//! Settings come from build-time environment variables (`src/settings.rs`).
#![no_std]
#![no_main]

mod settings;

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, IpEndpoint, StackResources};
use embassy_time::{Delay, Duration, Instant, Timer};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::i2c::master::{Config as I2cConfig, I2c};
use esp_hal::rng::Rng;
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, Interface, WifiController,
};
use log::{info, warn};
use static_cell::StaticCell;
use tether_firmware::client::{Client, Config, Event};
use tether_firmware::driver::{Async, Clock};
use tether_firmware::protocols::mqtt::QoS;
use tether_firmware::sensor::Reading;
use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY, Bme280};
use tether_firmware::sensor::sim::SimulatedBme280;
use tether_firmware::sensor::telemetry::{Telemetry, command_topic, telemetry_topic};

esp_bootloader_esp_idf::esp_app_desc!();

/// Readings kept while offline, and bytes of topic + payload per reading.
const OUTBOX: usize = 32;
const SLOT: usize = 160;
/// Time between readings.
const INTERVAL: Duration = Duration::from_secs(10);

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Interface>) -> ! {
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
    Real(Bme280<I2c<'static, esp_hal::Blocking>>),
    Simulated(Bme280<SimulatedBme280>),
}

impl Sensor {
    fn measure(&mut self) -> Option<Reading> {
        let mut delay = esp_hal::delay::Delay::new();
        match self {
            Self::Real(s) => s.measure(&mut delay).ok(),
            Self::Simulated(s) => s.measure(&mut delay).ok(),
        }
    }
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    info!(
        "tether-esp32c3: device {}, gateway {:?}",
        settings::DEVICE_ID,
        settings::GATEWAY
    );
    if settings::PLACEHOLDERS {
        warn!("built without TETHER_WIFI_SSID / TETHER_GATEWAY: using placeholders");
    }

    // Wi-Fi station.
    let mut wifi = match WifiController::new(peripherals.WIFI, Default::default()) {
        Ok(w) => w,
        Err(e) => panic!("Wi-Fi init failed: {e:?}"),
    };
    let (Ok(ssid), Ok(password)) = (settings::SSID.try_into(), settings::PASSWORD.try_into())
    else {
        panic!("TETHER_WIFI_SSID (32 bytes) or TETHER_WIFI_PASSWORD (64 bytes) too long");
    };
    let authentication = if settings::PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(password)
    };
    let station = StationConfig::default()
        .with_ssid(ssid)
        .with_authentication(authentication);
    if let Err(e) = wifi.set_config(&WifiConfig::Station(station)) {
        panic!("Wi-Fi configuration refused: {e:?}");
    }

    let rng = Rng::new();
    static NET: StaticCell<StackResources<3>> = StaticCell::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        NET.init(StackResources::new()),
        seed,
    );
    spawner.spawn(net_task(runner).expect("net task"));

    while let Err(e) = wifi.connect_async().await {
        warn!("joining {} failed: {e:?}; retrying", settings::SSID);
        Timer::after_secs(2).await;
    }
    info!("joined {}; waiting for DHCP", settings::SSID);
    stack.wait_config_up().await;

    let mut sensor = match I2c::new(peripherals.I2C0, I2cConfig::default()) {
        Ok(i2c) => {
            let i2c = i2c.with_sda(peripherals.GPIO4).with_scl(peripherals.GPIO5);
            match Bme280::new(i2c, ADDRESS_PRIMARY, &mut esp_hal::delay::Delay::new()) {
                Ok(s) => Some(Sensor::Real(s)),
                Err(_) => None,
            }
        }
        Err(_) => None,
    }
    .unwrap_or_else(|| {
        warn!("no BME280 on I2C0 (GPIO4/GPIO5): using the simulated sensor");
        match Bme280::new(
            SimulatedBme280::new(ADDRESS_PRIMARY),
            ADDRESS_PRIMARY,
            &mut esp_hal::delay::Delay::new(),
        ) {
            Ok(s) => Sensor::Simulated(s),
            Err(_) => panic!("simulated BME280 failed"),
        }
    });

    static TOPIC: StaticCell<[u8; 64]> = StaticCell::new();
    static COMMANDS: StaticCell<[u8; 64]> = StaticCell::new();
    let (Ok(topic), Ok(commands)) = (
        telemetry_topic(settings::DEVICE_ID, TOPIC.init([0; 64])),
        command_topic(settings::DEVICE_ID, COMMANDS.init([0; 64])),
    ) else {
        panic!("device id too long for a topic");
    };

    static RX: StaticCell<[u8; 512]> = StaticCell::new();
    static TX: StaticCell<[u8; 512]> = StaticCell::new();
    let config = Config::new(settings::DEVICE_ID)
        .with_commands(commands)
        .with_keep_alive(60)
        .with_jitter_seed(rng.random());
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
            warn!("cannot reach the gateway: {e:?}");
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
                    info!("connected (session present: {session_present})");
                }
                Ok(Some(Event::Delivered { packet_id })) => info!("reading {packet_id} delivered"),
                Ok(Some(Event::Command(c))) => info!(
                    "command on {}: {:?}",
                    c.topic,
                    core::str::from_utf8(c.payload).unwrap_or("<binary>")
                ),
                Ok(_) => {}
                Err(e) => {
                    warn!(
                        "connection lost ({e}); {} readings wait in the outbox",
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

//! The BME280 path: the driver against `embedded-hal-mock` (exact bus
//! traffic), against the simulated chip, and the telemetry it produces.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2c};
use tether_firmware::sensor::Reading;
use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY as A, Bme280, Calibration, Error};
use tether_firmware::sensor::sim::{CALIB_H, CALIB_TP, SimulatedBme280};
use tether_firmware::sensor::telemetry::{FormatError, Telemetry, command_topic, telemetry_topic};

/// The bus traffic of `Bme280::new` on a healthy chip.
fn init_transactions() -> Vec<I2c> {
    vec![
        I2c::write_read(A, vec![0xD0], vec![0x60]),
        I2c::write(A, vec![0xE0, 0xB6]),
        I2c::write_read(A, vec![0xF3], vec![0x00]),
        I2c::write_read(A, vec![0x88], CALIB_TP.to_vec()),
        I2c::write_read(A, vec![0xE1], CALIB_H.to_vec()),
        I2c::write(A, vec![0xF2, 0x01]),
        I2c::write(A, vec![0xF5, 0x00]),
        I2c::write(A, vec![0xF4, 0x24]),
    ]
}

/// Raw registers 0xF7..=0xFE for adc_P 415148, adc_T 519888, adc_H 27000.
const DATA: [u8; 8] = [0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x69, 0x78];

/// Datasheet BMP280 §3.12 example: 25.08 °C, 100653.27 Pa (floating point).
const EXPECTED_T: i32 = 2508;
const EXPECTED_P: u32 = 100_653;

/// Humidity by the datasheet's double-precision formula (§8.1), an
/// independent reference for the integer one.
fn humidity_reference(c: &Calibration, t_fine: i32, adc_h: i32) -> f64 {
    let (h1, h2, h3, h4, h5, h6) = (
        f64::from(c.h1),
        f64::from(c.h2),
        f64::from(c.h3),
        f64::from(c.h4),
        f64::from(c.h5),
        f64::from(c.h6),
    );
    let mut h = f64::from(t_fine) - 76_800.0;
    h = (f64::from(adc_h) - (h4 * 64.0 + h5 / 16_384.0 * h))
        * (h2 / 65_536.0 * (1.0 + h6 / 67_108_864.0 * h * (1.0 + h3 / 67_108_864.0 * h)));
    h * (1.0 - h1 * h / 524_288.0)
}

#[test]
fn init_checks_the_chip_id_resets_and_reads_the_calibration() {
    let mut i2c = I2cMock::new(&init_transactions());
    let dev = Bme280::new(i2c.clone(), A, &mut NoopDelay::new()).expect("init");
    let c = dev.calibration();
    assert_eq!((c.t1, c.t2, c.t3), (27504, 26435, -1000));
    assert_eq!(
        (c.p1, c.p2, c.p3, c.p4, c.p5, c.p6, c.p7, c.p8, c.p9),
        (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
    );
    assert_eq!(
        (c.h1, c.h2, c.h3, c.h4, c.h5, c.h6),
        (75, 362, 0, 313, 50, 30)
    );
    i2c.done();
}

#[test]
fn wrong_chip_id_is_refused_before_anything_is_written() {
    // 0x58 is a BMP280: no humidity.
    let mut i2c = I2cMock::new(&[I2c::write_read(A, vec![0xD0], vec![0x58])]);
    let err = Bme280::new(i2c.clone(), A, &mut NoopDelay::new()).err();
    assert_eq!(err, Some(Error::WrongChip(0x58)));
    i2c.done();
}

#[test]
fn bus_error_is_reported() {
    let mut i2c =
        I2cMock::new(&[I2c::write_read(A, vec![0xD0], vec![0x00]).with_error(ErrorKind::Other)]);
    let err = Bme280::new(i2c.clone(), A, &mut NoopDelay::new()).err();
    assert_eq!(err, Some(Error::I2c(ErrorKind::Other)));
    i2c.done();
}

#[test]
fn forced_measurement_compensates_to_the_known_good_values() {
    let mut t = init_transactions();
    t.extend([
        I2c::write(A, vec![0xF4, 0x25]),
        // Still measuring once, then done.
        I2c::write_read(A, vec![0xF3], vec![0x08]),
        I2c::write_read(A, vec![0xF3], vec![0x00]),
        I2c::write_read(A, vec![0xF7], DATA.to_vec()),
    ]);
    let mut i2c = I2cMock::new(&t);
    let mut delay = NoopDelay::new();
    let mut dev = Bme280::new(i2c.clone(), A, &mut delay).unwrap();
    let r = dev.measure(&mut delay).unwrap();
    assert_eq!(r.temperature_centi_c, EXPECTED_T);
    assert_eq!(r.pressure_pa, EXPECTED_P);
    let (t_fine, _) = dev.calibration().temperature(519_888);
    assert_eq!(t_fine, 128_422, "datasheet t_fine");
    let reference = humidity_reference(dev.calibration(), t_fine, 27_000);
    let measured = f64::from(r.humidity_milli_pct) / 1000.0;
    assert!(
        (measured - reference).abs() < 0.01,
        "humidity {measured} vs reference {reference}"
    );
    assert_eq!(r.humidity_milli_pct, 38_271);
    i2c.done();
}

#[test]
fn chip_that_never_finishes_converting_times_out() {
    let mut t = init_transactions();
    t.push(I2c::write(A, vec![0xF4, 0x25]));
    for _ in 0..10 {
        t.push(I2c::write_read(A, vec![0xF3], vec![0x08]));
    }
    let mut i2c = I2cMock::new(&t);
    let mut delay = NoopDelay::new();
    let mut dev = Bme280::new(i2c.clone(), A, &mut delay).unwrap();
    assert_eq!(dev.measure(&mut delay), Err(Error::Timeout));
    i2c.done();
}

#[test]
fn compensation_of_garbage_never_panics() {
    let c = Calibration::parse(&[0xFF; 26], &[0x80; 7]);
    for raw in [0, 1, 0x7FFFF, 0xFFFFF, i32::MAX, i32::MIN, -1] {
        let _ = c.compensate(raw, raw, raw);
    }
    let zero = Calibration::default();
    assert_eq!(
        zero.compensate(0, 0, 0).pressure_pa,
        0,
        "division by zero avoided"
    );
}

#[test]
fn simulated_chip_reads_like_the_real_one() {
    let mut delay = NoopDelay::new();
    let mut dev = Bme280::new(SimulatedBme280::new(A), A, &mut delay).unwrap();
    let first = dev.measure(&mut delay).unwrap();
    assert_eq!(first.temperature_centi_c, EXPECTED_T);
    assert_eq!(first.pressure_pa, EXPECTED_P);
    assert_eq!(first.humidity_milli_pct, 38_271);
    let second = dev.measure(&mut delay).unwrap();
    assert_ne!(first, second, "readings drift");
    assert!((2000..3000).contains(&second.temperature_centi_c));
    assert_eq!(dev.release().samples(), 2);
}

#[test]
fn simulated_chip_at_another_address_does_not_answer() {
    let err = Bme280::new(SimulatedBme280::new(0x77), A, &mut NoopDelay::new()).err();
    assert!(matches!(err, Some(Error::I2c(_))));
}

// --- telemetry ------------------------------------------------------------------

fn json(t: &Telemetry<'_>) -> String {
    let mut buf = [0u8; 160];
    let n = t.write_json(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn telemetry_json_has_the_documented_shape() {
    let t = Telemetry {
        device: "d1",
        reading: Reading {
            temperature_centi_c: 2153,
            humidity_milli_pct: 40_123,
            pressure_pa: 101_320,
        },
        seq: 42,
    };
    assert_eq!(
        json(&t),
        r#"{"device":"d1","temperature":21.53,"humidity":40.1,"pressure":1013.2,"seq":42}"#
    );
}

#[test]
fn telemetry_json_handles_sub_zero_and_small_values() {
    let mut t = Telemetry {
        device: "d1",
        reading: Reading {
            temperature_centi_c: -5,
            humidity_milli_pct: 0,
            pressure_pa: 4,
        },
        seq: 0,
    };
    assert!(json(&t).contains(r#""temperature":-0.05,"humidity":0.0,"pressure":0.0,"seq":0"#));
    t.reading.temperature_centi_c = -1234;
    t.seq = u32::MAX;
    let s = json(&t);
    assert!(s.contains(r#""temperature":-12.34"#), "{s}");
    assert!(s.ends_with(r#""seq":4294967295}"#), "{s}");
}

#[test]
fn telemetry_json_is_valid_json_for_any_device_id() {
    let t = Telemetry {
        device: "a\"b\\c\n",
        reading: Reading::default(),
        seq: 1,
    };
    let s = json(&t);
    assert!(s.starts_with(r#"{"device":"a\"b\\c\u000a","#), "{s}");
}

#[test]
fn telemetry_json_reports_a_short_buffer() {
    let t = Telemetry {
        device: "d1",
        reading: Reading::default(),
        seq: 1,
    };
    let mut small = [0u8; 20];
    assert_eq!(t.write_json(&mut small), Err(FormatError::BufferTooSmall));
}

#[test]
fn topics_follow_the_gateway_layout() {
    let mut buf = [0u8; 64];
    assert_eq!(telemetry_topic("d1", &mut buf), Ok("sensors/d1/telemetry"));
    assert_eq!(command_topic("d1", &mut buf), Ok("devices/d1/cmd"));
    assert_eq!(
        telemetry_topic("a/b", &mut buf),
        Err(FormatError::InvalidDeviceId)
    );
    assert_eq!(
        telemetry_topic("", &mut buf),
        Err(FormatError::InvalidDeviceId)
    );
    assert_eq!(
        command_topic("+", &mut buf),
        Err(FormatError::InvalidDeviceId)
    );
    let mut tiny = [0u8; 8];
    assert_eq!(
        telemetry_topic("d1", &mut tiny),
        Err(FormatError::BufferTooSmall)
    );
}

//! Bosch BME280 (temperature, humidity, pressure) over I²C.
//!
//! [`Bme280::new`] checks the chip id, soft-resets the chip, reads its
//! calibration and configures oversampling ×1 for all three quantities with
//! the IIR filter off; [`Bme280::measure`] triggers one forced-mode
//! conversion, waits for it and compensates the raw values with the integer
//! formulas of the datasheet (BST-BME280-DS002, §4.2.3 and §8.2). Arithmetic
//! wraps instead of overflowing, so a faulty bus yields nonsense numbers,
//! never a panic.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use super::Reading;

/// I²C address with SDO tied to ground.
pub const ADDRESS_PRIMARY: u8 = 0x76;
/// I²C address with SDO tied to VDDIO.
pub const ADDRESS_SECONDARY: u8 = 0x77;
/// Value of the chip id register of a BME280 (a BMP280 answers 0x58).
pub const CHIP_ID: u8 = 0x60;

/// Register addresses.
pub mod reg {
    /// First calibration block, `calib00`..`calib25` (26 bytes).
    pub const CALIB_TP: u8 = 0x88;
    /// Chip id.
    pub const ID: u8 = 0xD0;
    /// Soft reset (write [`RESET_WORD`](super::RESET_WORD)).
    pub const RESET: u8 = 0xE0;
    /// Second calibration block, `calib26`..`calib32` (7 bytes used).
    pub const CALIB_H: u8 = 0xE1;
    /// Humidity oversampling.
    pub const CTRL_HUM: u8 = 0xF2;
    /// Status: bit 3 measuring, bit 0 copying calibration.
    pub const STATUS: u8 = 0xF3;
    /// Temperature/pressure oversampling and mode.
    pub const CTRL_MEAS: u8 = 0xF4;
    /// Standby time, IIR filter.
    pub const CONFIG: u8 = 0xF5;
    /// First data register (`press_msb`); 8 bytes to `hum_lsb`.
    pub const DATA: u8 = 0xF7;
}

/// The word that soft-resets the chip.
pub const RESET_WORD: u8 = 0xB6;
/// `ctrl_hum`: humidity oversampling ×1.
const CTRL_HUM_X1: u8 = 0b001;
/// `ctrl_meas`: temperature ×1, pressure ×1, sleep mode.
const CTRL_MEAS_SLEEP: u8 = (0b001 << 5) | (0b001 << 2);
/// `ctrl_meas`: the same in forced mode (one conversion, then sleep).
const CTRL_MEAS_FORCED: u8 = CTRL_MEAS_SLEEP | 0b01;
/// Datasheet §9.1: a ×1/×1/×1 conversion takes at most 9.3 ms.
const MAX_CONVERSION_MS: u32 = 10;
/// How often to re-read the status while converting or copying calibration.
const STATUS_POLLS: u8 = 10;

/// What can go wrong talking to the sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed.
    I2c(E),
    /// The chip id register did not read [`CHIP_ID`] (wrong chip or address).
    WrongChip(u8),
    /// The chip stayed busy (measuring, or copying calibration) too long.
    Timeout,
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Self::I2c(e)
    }
}

/// The factory trimming parameters (datasheet §4.2.2), named after the
/// datasheet's `dig_*` registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calibration {
    /// dig_T1 (0x88).
    pub t1: u16,
    /// dig_T2 (0x8A).
    pub t2: i16,
    /// dig_T3 (0x8C).
    pub t3: i16,
    /// dig_P1 (0x8E).
    pub p1: u16,
    /// dig_P2 (0x90).
    pub p2: i16,
    /// dig_P3 (0x92).
    pub p3: i16,
    /// dig_P4 (0x94).
    pub p4: i16,
    /// dig_P5 (0x96).
    pub p5: i16,
    /// dig_P6 (0x98).
    pub p6: i16,
    /// dig_P7 (0x9A).
    pub p7: i16,
    /// dig_P8 (0x9C).
    pub p8: i16,
    /// dig_P9 (0x9E).
    pub p9: i16,
    /// dig_H1 (0xA1).
    pub h1: u8,
    /// dig_H2 (0xE1).
    pub h2: i16,
    /// dig_H3 (0xE3).
    pub h3: u8,
    /// dig_H4 (0xE4, low nibble of 0xE5; 12 bits).
    pub h4: i16,
    /// dig_H5 (high nibble of 0xE5, 0xE6; 12 bits).
    pub h5: i16,
    /// dig_H6 (0xE7).
    pub h6: i8,
}

impl Calibration {
    /// Parses the two calibration blocks as read from [`reg::CALIB_TP`] (26
    /// bytes) and [`reg::CALIB_H`] (7 bytes).
    pub fn parse(tp: &[u8; 26], h: &[u8; 7]) -> Self {
        let u16le = |i: usize| u16::from_le_bytes([tp[i], tp[i + 1]]);
        let i16le = |i: usize| i16::from_le_bytes([tp[i], tp[i + 1]]);
        Self {
            t1: u16le(0),
            t2: i16le(2),
            t3: i16le(4),
            p1: u16le(6),
            p2: i16le(8),
            p3: i16le(10),
            p4: i16le(12),
            p5: i16le(14),
            p6: i16le(16),
            p7: i16le(18),
            p8: i16le(20),
            p9: i16le(22),
            h1: tp[25],
            h2: i16::from_le_bytes([h[0], h[1]]),
            h3: h[2],
            // 12-bit values sharing 0xE5: H4 = E4[7:0] E5[3:0], H5 = E6[7:0] E5[7:4].
            h4: ((i16::from(h[3] as i8)) << 4) | i16::from(h[4] & 0x0F),
            h5: ((i16::from(h[5] as i8)) << 4) | i16::from(h[4] >> 4),
            h6: h[6] as i8,
        }
    }

    /// Compensates raw ADC values (20-bit temperature and pressure, 16-bit
    /// humidity) into a [`Reading`].
    pub fn compensate(&self, adc_t: i32, adc_p: i32, adc_h: i32) -> Reading {
        let (t_fine, temperature) = self.temperature(adc_t);
        Reading {
            temperature_centi_c: temperature,
            pressure_pa: self.pressure(t_fine, adc_p) >> 8,
            humidity_milli_pct: q10_to_milli(self.humidity(t_fine, adc_h)),
        }
    }

    /// Datasheet `BME280_compensate_T_int32`: (t_fine, hundredths of °C).
    pub fn temperature(&self, adc_t: i32) -> (i32, i32) {
        let t1 = i32::from(self.t1);
        let var1 = ((adc_t >> 3).wrapping_sub(t1 << 1)).wrapping_mul(i32::from(self.t2)) >> 11;
        let d = (adc_t >> 4).wrapping_sub(t1);
        let var2 = ((d.wrapping_mul(d) >> 12).wrapping_mul(i32::from(self.t3))) >> 14;
        let t_fine = var1.wrapping_add(var2);
        (t_fine, (t_fine.wrapping_mul(5).wrapping_add(128)) >> 8)
    }

    /// Datasheet `BME280_compensate_P_int64`: pascals in Q24.8.
    pub fn pressure(&self, t_fine: i32, adc_p: i32) -> u32 {
        let mut var1 = i64::from(t_fine) - 128_000;
        let mut var2 = var1.wrapping_mul(var1).wrapping_mul(i64::from(self.p6));
        var2 = var2.wrapping_add(var1.wrapping_mul(i64::from(self.p5)) << 17);
        var2 = var2.wrapping_add(i64::from(self.p4) << 35);
        var1 = (var1.wrapping_mul(var1).wrapping_mul(i64::from(self.p3)) >> 8)
            .wrapping_add(var1.wrapping_mul(i64::from(self.p2)) << 12);
        var1 = ((1i64 << 47).wrapping_add(var1)).wrapping_mul(i64::from(self.p1)) >> 33;
        if var1 == 0 {
            return 0; // avoid a division by zero
        }
        let mut p: i64 = 1_048_576 - i64::from(adc_p);
        p = ((p << 31).wrapping_sub(var2))
            .wrapping_mul(3125)
            .wrapping_div(var1);
        let var1 = i64::from(self.p9)
            .wrapping_mul(p >> 13)
            .wrapping_mul(p >> 13)
            >> 25;
        let var2 = i64::from(self.p8).wrapping_mul(p) >> 19;
        p = (p.wrapping_add(var1).wrapping_add(var2) >> 8).wrapping_add(i64::from(self.p7) << 4);
        p as u32
    }

    /// Datasheet `bme280_compensate_H_int32`: %RH in Q22.10.
    pub fn humidity(&self, t_fine: i32, adc_h: i32) -> u32 {
        let v = t_fine.wrapping_sub(76_800);
        let a = (adc_h << 14)
            .wrapping_sub(i32::from(self.h4) << 20)
            .wrapping_sub(i32::from(self.h5).wrapping_mul(v))
            .wrapping_add(16_384)
            >> 15;
        let b = ((v.wrapping_mul(i32::from(self.h6)) >> 10)
            .wrapping_mul((v.wrapping_mul(i32::from(self.h3)) >> 11).wrapping_add(32_768))
            >> 10)
            .wrapping_add(2_097_152)
            .wrapping_mul(i32::from(self.h2))
            .wrapping_add(8_192)
            >> 14;
        let mut v = a.wrapping_mul(b);
        let s = v >> 15;
        v = v.wrapping_sub(((s.wrapping_mul(s) >> 7).wrapping_mul(i32::from(self.h1))) >> 4);
        let v = v.clamp(0, 419_430_400);
        (v >> 12) as u32
    }
}

/// %RH in Q22.10 to thousandths of a percent, rounded.
fn q10_to_milli(q10: u32) -> u32 {
    ((u64::from(q10) * 1000 + 512) / 1024) as u32
}

/// A BME280 on an I²C bus.
pub struct Bme280<I> {
    i2c: I,
    address: u8,
    calibration: Calibration,
}

impl<I: I2c> Bme280<I> {
    /// Checks the chip, resets it, reads the calibration and configures it.
    pub fn new<D: DelayNs>(i2c: I, address: u8, delay: &mut D) -> Result<Self, Error<I::Error>> {
        let mut dev = Self {
            i2c,
            address,
            calibration: Calibration::default(),
        };
        let mut id = [0u8];
        dev.i2c.write_read(address, &[reg::ID], &mut id)?;
        if id[0] != CHIP_ID {
            return Err(Error::WrongChip(id[0]));
        }
        dev.i2c.write(address, &[reg::RESET, RESET_WORD])?;
        // Datasheet: 2 ms start-up, then wait for the NVM copy to finish.
        delay.delay_ms(2);
        dev.wait_status(0b0000_0001, delay)?;
        let mut tp = [0u8; 26];
        let mut h = [0u8; 7];
        dev.i2c.write_read(address, &[reg::CALIB_TP], &mut tp)?;
        dev.i2c.write_read(address, &[reg::CALIB_H], &mut h)?;
        dev.calibration = Calibration::parse(&tp, &h);
        // ctrl_hum takes effect only after a write to ctrl_meas (datasheet §5.4.3).
        dev.i2c.write(address, &[reg::CTRL_HUM, CTRL_HUM_X1])?;
        dev.i2c.write(address, &[reg::CONFIG, 0])?;
        dev.i2c.write(address, &[reg::CTRL_MEAS, CTRL_MEAS_SLEEP])?;
        Ok(dev)
    }

    /// Runs one forced-mode conversion and returns the compensated reading.
    pub fn measure<D: DelayNs>(&mut self, delay: &mut D) -> Result<Reading, Error<I::Error>> {
        self.i2c
            .write(self.address, &[reg::CTRL_MEAS, CTRL_MEAS_FORCED])?;
        delay.delay_ms(MAX_CONVERSION_MS);
        self.wait_status(0b0000_1000, delay)?;
        let mut d = [0u8; 8];
        self.i2c.write_read(self.address, &[reg::DATA], &mut d)?;
        let adc_p = (i32::from(d[0]) << 12) | (i32::from(d[1]) << 4) | (i32::from(d[2]) >> 4);
        let adc_t = (i32::from(d[3]) << 12) | (i32::from(d[4]) << 4) | (i32::from(d[5]) >> 4);
        let adc_h = (i32::from(d[6]) << 8) | i32::from(d[7]);
        Ok(self.calibration.compensate(adc_t, adc_p, adc_h))
    }

    /// The calibration read from the chip.
    pub const fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }

    /// Waits until the status bits in `mask` are clear.
    fn wait_status<D: DelayNs>(&mut self, mask: u8, delay: &mut D) -> Result<(), Error<I::Error>> {
        for _ in 0..STATUS_POLLS {
            let mut status = [0u8];
            self.i2c
                .write_read(self.address, &[reg::STATUS], &mut status)?;
            if status[0] & mask == 0 {
                return Ok(());
            }
            delay.delay_ms(1);
        }
        Err(Error::Timeout)
    }
}

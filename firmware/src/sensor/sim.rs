//! A simulated BME280 behind an `embedded-hal` [`I2c`] implementation.
//!
//! It answers like the real chip at its address: chip id, soft reset,
//! status, the calibration blocks, the control registers and a fresh raw
//! sample after every forced-mode trigger. The [`Bme280`](super::bme280::Bme280)
//! driver runs against it unchanged, which is how the QEMU firmware and the
//! host tests produce readings without hardware.
//!
//! The calibration is the worked example of the Bosch BMP280 datasheet
//! (§3.12, temperature and pressure) plus humidity trimming typical of a
//! BME280; the first sample compensates to 25.08 °C and 1006.53 hPa.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

use super::bme280::{CHIP_ID, RESET_WORD, reg};

/// Calibration registers 0x88..=0xA1 (26 bytes).
pub const CALIB_TP: [u8; 26] = {
    let words: [u16; 12] = [
        27504,              // T1
        26435,              // T2
        (-1000i16) as u16,  // T3
        36477,              // P1
        (-10685i16) as u16, // P2
        3024,               // P3
        2855,               // P4
        140,                // P5
        (-7i16) as u16,     // P6
        15500,              // P7
        (-14600i16) as u16, // P8
        6000,               // P9
    ];
    let mut out = [0u8; 26];
    let mut i = 0;
    while i < 12 {
        let b = words[i].to_le_bytes();
        out[2 * i] = b[0];
        out[2 * i + 1] = b[1];
        i += 1;
    }
    out[24] = 0; // 0xA0, unused
    out[25] = 75; // H1
    out
};

/// Calibration registers 0xE1..=0xE7: H2 = 362, H3 = 0, H4 = 313, H5 = 50, H6 = 30.
pub const CALIB_H: [u8; 7] = {
    let h2 = 362u16.to_le_bytes();
    let h4: u16 = 313;
    let h5: u16 = 50;
    [
        h2[0],
        h2[1],
        0,
        (h4 >> 4) as u8,
        ((h4 & 0x0F) as u8) | (((h5 & 0x0F) as u8) << 4),
        (h5 >> 4) as u8,
        30,
    ]
};

/// Raw ADC values of the first sample: temperature, pressure, humidity.
pub const FIRST_SAMPLE: (u32, u32, u16) = (519_888, 415_148, 27_000);

/// A BME280 that exists only in software.
#[derive(Debug, Clone)]
pub struct SimulatedBme280 {
    address: u8,
    pointer: u8,
    ctrl_hum: u8,
    ctrl_meas: u8,
    config: u8,
    samples: u32,
    raw: (u32, u32, u16),
}

impl SimulatedBme280 {
    /// A sensor answering at `address`.
    pub const fn new(address: u8) -> Self {
        Self {
            address,
            pointer: 0,
            ctrl_hum: 0,
            ctrl_meas: 0,
            config: 0,
            samples: 0,
            raw: (0x80000, 0x80000, 0x8000),
        }
    }

    /// Forced conversions done so far.
    pub const fn samples(&self) -> u32 {
        self.samples
    }

    /// The raw sample for conversion `n`: a slow drift around [`FIRST_SAMPLE`]
    /// so consecutive readings differ.
    pub const fn raw_sample(n: u32) -> (u32, u32, u16) {
        let step = n % 8;
        (
            FIRST_SAMPLE.0 + 64 * step,
            FIRST_SAMPLE.1 - 32 * step,
            FIRST_SAMPLE.2 + 40 * step as u16,
        )
    }

    fn read_register(&self, r: u8) -> u8 {
        let (t, p, h) = self.raw;
        match r {
            reg::CALIB_TP..=0xA1 => CALIB_TP[usize::from(r - reg::CALIB_TP)],
            reg::ID => CHIP_ID,
            reg::CALIB_H..=0xE7 => CALIB_H[usize::from(r - reg::CALIB_H)],
            reg::CTRL_HUM => self.ctrl_hum,
            // Conversions complete instantly: never measuring or copying.
            reg::STATUS => 0,
            reg::CTRL_MEAS => self.ctrl_meas,
            reg::CONFIG => self.config,
            0xF7 => (p >> 12) as u8,
            0xF8 => (p >> 4) as u8,
            0xF9 => ((p & 0x0F) << 4) as u8,
            0xFA => (t >> 12) as u8,
            0xFB => (t >> 4) as u8,
            0xFC => ((t & 0x0F) << 4) as u8,
            0xFD => (h >> 8) as u8,
            0xFE => h as u8,
            _ => 0,
        }
    }

    fn write_register(&mut self, r: u8, value: u8) {
        match r {
            reg::RESET if value == RESET_WORD => {
                self.ctrl_hum = 0;
                self.ctrl_meas = 0;
                self.config = 0;
            }
            reg::CTRL_HUM => self.ctrl_hum = value & 0x07,
            reg::CTRL_MEAS => {
                self.ctrl_meas = value;
                if value & 0b11 == 0b01 || value & 0b11 == 0b10 {
                    // Forced mode: convert now, then back to sleep.
                    self.raw = Self::raw_sample(self.samples);
                    self.samples = self.samples.wrapping_add(1);
                    self.ctrl_meas &= !0b11;
                }
            }
            reg::CONFIG => self.config = value,
            _ => {}
        }
    }
}

impl ErrorType for SimulatedBme280 {
    type Error = ErrorKind;
}

impl I2c for SimulatedBme280 {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != self.address {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    // First byte selects the register; the rest are written
                    // to consecutive registers.
                    let Some((&first, rest)) = bytes.split_first() else {
                        continue;
                    };
                    self.pointer = first;
                    for &b in rest {
                        self.write_register(self.pointer, b);
                        self.pointer = self.pointer.wrapping_add(1);
                    }
                }
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = self.read_register(self.pointer);
                        self.pointer = self.pointer.wrapping_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

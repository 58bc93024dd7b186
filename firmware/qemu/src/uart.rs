//! UART0 of the LM3S6965 (an ARM PL011), polled, behind `embedded-io`.
//!
//! QEMU connects this UART to a TCP socket (`-serial tcp:HOST:PORT`), so the
//! bytes written here reach the gateway like a TCP client's, and its replies
//! arrive in the receive FIFO. `ReadReady` (the receive FIFO is not empty) is
//! what lets the blocking driver wait without blocking forever.

use core::ptr::{read_volatile, write_volatile};

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};

/// UART0 registers.
const UART0: usize = 0x4000_C000;
const DR: usize = UART0;
const FR: usize = UART0 + 0x018;
const LCRH: usize = UART0 + 0x02C;
const CTL: usize = UART0 + 0x030;
/// Flag register bits: receive FIFO empty, transmit FIFO full.
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// Line control: 8 data bits, FIFOs enabled.
const LCRH_WLEN8_FEN: u32 = (0b11 << 5) | (1 << 4);
/// Control: UART, transmitter and receiver enabled.
const CTL_UARTEN_TXE_RXE: u32 = (1 << 0) | (1 << 8) | (1 << 9);
/// System control: run-mode clock gating register 1 (bit 0: UART0).
const SYSCTL_RCGC1: usize = 0x400F_E104;

/// The one UART0; hold it to talk to the gateway.
pub struct Uart0 {
    _private: (),
}

fn read(addr: usize) -> u32 {
    // SAFETY: `addr` is one of the UART0 / system-control registers listed
    // above: valid, aligned MMIO on the LM3S6965, and reading them has no
    // side effect other than popping the receive FIFO for DR (intended).
    unsafe { read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: as for `read`; only `Uart0` (a singleton) writes these.
    unsafe { write_volatile(addr as *mut u32, value) }
}

impl Uart0 {
    /// Clocks and enables UART0 (8N1, FIFOs on). Call once.
    pub fn take() -> Self {
        write(SYSCTL_RCGC1, read(SYSCTL_RCGC1) | 1);
        write(CTL, 0);
        write(LCRH, LCRH_WLEN8_FEN);
        write(CTL, CTL_UARTEN_TXE_RXE);
        Self { _private: () }
    }

    fn rx_empty() -> bool {
        read(FR) & FR_RXFE != 0
    }
}

impl ErrorType for Uart0 {
    type Error = ErrorKind;
}

impl Read for Uart0 {
    /// Blocks until at least one byte is there, then takes what the FIFO holds.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        while Self::rx_empty() {
            core::hint::spin_loop();
        }
        let mut n = 0;
        while n < buf.len() && !Self::rx_empty() {
            // Low 8 bits are the data; bits 8..=11 are error flags.
            buf[n] = read(DR) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(!Self::rx_empty())
    }
}

impl Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for &b in buf {
            while read(FR) & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            write(DR, u32::from(b));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

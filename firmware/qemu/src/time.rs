//! Milliseconds from SysTick, and a delay that sleeps until they pass.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use tether_firmware::driver::Clock;

/// The core clock QEMU gives the lm3s6965evb after reset.
pub const CORE_HZ: u32 = 12_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Starts a 1 kHz SysTick interrupt.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1_000 - 1);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

/// Milliseconds since [`start`].
pub struct Millis;

impl Clock for Millis {
    fn now_ms(&self) -> u64 {
        u64::from(MILLIS.load(Ordering::Relaxed))
    }
}

/// Sleeps (WFI) until enough SysTick interrupts have passed.
pub struct Delay;

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let start = MILLIS.load(Ordering::Relaxed);
        let ms = ns.div_ceil(1_000_000);
        while MILLIS.load(Ordering::Relaxed).wrapping_sub(start) < ms {
            cortex_m::asm::wfi();
        }
    }
}

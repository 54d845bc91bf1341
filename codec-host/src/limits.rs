//! Sandbox limits of a plugin: memory per instance, CPU per call, input frame size.

/// Bytes in one Wasm page.
pub(crate) const WASM_PAGE: u64 = 64 * 1024;

/// Per-plugin sandbox limits. Zero fields mean "use the default" (see [`Limits::resolved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap per instance in MiB (MOSN `vm_config.mem`). Growth past it fails
    /// inside the guest (`memory.grow` returns -1), which a plugin reports as an allocation
    /// failure and usually turns into a trap. 0 means [`Limits::DEFAULT_MEMORY_MIB`].
    pub memory_mib: u32,
    /// CPU budget of one codec operation in metering points (about one point per executed
    /// Wasm operator). Exhaustion stops the guest with [`crate::CodecError::CpuExhausted`]. 0 means
    /// [`Limits::DEFAULT_CPU_POINTS`].
    pub cpu_points_per_call: u64,
    /// Largest frame decode accepts, in bytes. 0 means [`Limits::DEFAULT_MAX_FRAME_BYTES`].
    ///
    /// The one owner of the frame limit: the host passes it to a Wasm plugin as the
    /// plugin-configuration pair `max_frame_bytes` ([`codec_abi::MAX_FRAME_BYTES_KEY`],
    /// replacing any configured pair of that name) and to a native protocol through the same
    /// pair in `Protocol::configure` ([`crate::NativeCodec::with_limits`],
    /// [`crate::native_codec`]), so the protocol refuses a longer frame as soon as its header
    /// announces one; the host itself refuses a buffer holding more than this without a
    /// complete frame ([`crate::CodecError::TooLarge`]). A protocol may refuse a limit it
    /// cannot work with (Bolt: below 28 bytes); loading then fails.
    pub max_frame_bytes: usize,
    /// Instance replacements (after a trap or CPU exhaustion) a codec may make within a
    /// minute; past it the codec restarts the plugin at most once a second and refuses the
    /// calls in between ([`crate::CodecError::Instance`], logged), so a plugin that traps in
    /// a loop is reported, not restarted a thousand times a second. 0 means
    /// [`Limits::DEFAULT_RESTARTS_PER_MINUTE`].
    pub max_restarts_per_minute: u32,
}

impl Limits {
    /// Memory cap when `vm_config.mem` is 0 or absent: 64 MiB.
    pub const DEFAULT_MEMORY_MIB: u32 = 64;
    /// CPU budget per call when none is configured: 64 million points.
    ///
    /// A point is about one Wasm operator. Points are charged at loop back-edges, loop
    /// entries and function exits, for the operators written between the previous check
    /// and this one (`budget.rs`), so code a branch skipped is paid too. Measured with
    /// cranelift on the 2-core build host (`time_to_stop_an_endless_loop_with_the_default_budget`):
    /// the worst case for the host is a loop of a single branch (every point pays a check),
    /// stopped after ~160 ms; a two-operator loop after ~85 ms, a nine-operator counting loop
    /// after ~9 ms. A real call needs far less: start-up, decode and encode of a Bolt frame
    /// each fit in 40,000 points, for a small frame and for 4 MiB alike (bulk-memory copies
    /// cost one point; `a_bolt_frame_costs_the_guest_under_40000_points_whatever_its_size`),
    /// a 1,600× margin; a plugin touching every byte of a 4 MiB frame at ~10 operators per
    /// byte (a byte-wise CRC) still fits.
    pub const DEFAULT_CPU_POINTS: u64 = 64_000_000;
    /// Frame cap when none is configured: 4 MiB (gRPC's default message cap; MOSN's own
    /// bolt plugin was exercised with 3 MiB bodies).
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;
    /// Instance replacements allowed per codec per minute when none is configured.
    pub const DEFAULT_RESTARTS_PER_MINUTE: u32 = 60;
    /// Largest memory cap accepted: the whole 32-bit address space.
    pub const MAX_MEMORY_MIB: u32 = 4096;

    /// Limits with every default.
    pub fn new() -> Limits {
        Limits {
            memory_mib: 0,
            cpu_points_per_call: 0,
            max_frame_bytes: 0,
            max_restarts_per_minute: 0,
        }
    }

    /// Builds limits from MOSN's `vm_config.mem` (MiB; `None`, 0 or negative = default).
    pub fn from_vm_config_mem(mem: Option<i64>) -> Limits {
        let memory_mib = match mem {
            Some(m) if m > 0 => u32::try_from(m)
                .unwrap_or(Limits::MAX_MEMORY_MIB)
                .min(Limits::MAX_MEMORY_MIB),
            _ => 0,
        };
        Limits {
            memory_mib,
            ..Limits::new()
        }
    }

    /// The same limits with every zero replaced by its default and the memory cap clamped
    /// to [`Limits::MAX_MEMORY_MIB`].
    pub fn resolved(self) -> Limits {
        Limits {
            memory_mib: match self.memory_mib {
                0 => Limits::DEFAULT_MEMORY_MIB,
                m => m.min(Limits::MAX_MEMORY_MIB),
            },
            cpu_points_per_call: match self.cpu_points_per_call {
                0 => Limits::DEFAULT_CPU_POINTS,
                p => p,
            },
            max_frame_bytes: match self.max_frame_bytes {
                0 => Limits::DEFAULT_MAX_FRAME_BYTES,
                b => b,
            },
            max_restarts_per_minute: match self.max_restarts_per_minute {
                0 => Limits::DEFAULT_RESTARTS_PER_MINUTE,
                n => n,
            },
        }
    }

    /// The plugin-configuration pair that tells a protocol the frame limit (of a resolved
    /// `Limits`): `("max_frame_bytes", "<bytes>")`.
    pub(crate) fn frame_limit_pair(&self) -> (String, String) {
        (
            codec_abi::MAX_FRAME_BYTES_KEY.to_owned(),
            self.max_frame_bytes.to_string(),
        )
    }

    /// The memory cap in Wasm pages (of a resolved `Limits`).
    pub(crate) fn memory_pages(&self) -> u32 {
        let bytes = u64::from(self.memory_mib) << 20;
        u32::try_from(bytes / WASM_PAGE).unwrap_or(u32::MAX)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_absent_mean_defaults() {
        let l = Limits::from_vm_config_mem(None).resolved();
        assert_eq!(l.memory_mib, Limits::DEFAULT_MEMORY_MIB);
        assert_eq!(l.cpu_points_per_call, Limits::DEFAULT_CPU_POINTS);
        assert_eq!(l.max_frame_bytes, Limits::DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(Limits::from_vm_config_mem(Some(0)).resolved(), l);
        assert_eq!(Limits::from_vm_config_mem(Some(-5)).resolved(), l);
    }

    #[test]
    fn the_frame_limit_as_a_plugin_config_pair() {
        let l = Limits {
            max_frame_bytes: 8 << 20,
            ..Limits::new()
        };
        assert_eq!(
            l.resolved().frame_limit_pair(),
            ("max_frame_bytes".to_owned(), "8388608".to_owned())
        );
        assert_eq!(
            Limits::new().resolved().frame_limit_pair().1,
            Limits::DEFAULT_MAX_FRAME_BYTES.to_string()
        );
    }

    #[test]
    fn memory_cap_in_pages() {
        let l = Limits::from_vm_config_mem(Some(100)).resolved();
        assert_eq!(l.memory_mib, 100);
        assert_eq!(l.memory_pages(), 1600);
        let huge = Limits::from_vm_config_mem(Some(1 << 40)).resolved();
        assert_eq!(huge.memory_mib, Limits::MAX_MEMORY_MIB);
        assert_eq!(huge.memory_pages(), 65536);
    }
}

//! WASI for codec plugins (ABI §4.3), under both `wasi_unstable` and
//! `wasi_snapshot_preview1`: a closed sandbox. Plugins get no arguments, no environment, no
//! files, no sockets and no sleeping; stdout/stderr go to the log ([`GuestOutput`]); clocks
//! and randomness work; `proc_exit` ends the call with a trap. Every other preview1 function
//! exists with its proper signature and answers `ENOSYS`, so any WASI build links.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).
//!
//! [`GuestOutput`]: crate::guest_output::GuestOutput

use std::sync::OnceLock;
use std::time::Instant;

use wasmer::FunctionEnvMut;
use wasmer::Type::{I32, I64};

use super::guest_memory::{fill, gather_iovecs, memory};
use super::host_state::{HostAbort, HostState};
use super::table::{plain, with_env, Import, Namespace, Provider};
use super::time::now_ns;
use crate::signature::Sig;

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;
const ESPIPE: i32 = 70;

/// Most iovec entries one `fd_write`/`fd_read` accepts (POSIX IOV_MAX).
const IOV_MAX: u32 = 1024;
/// Most bytes of one `fd_write` kept for the log; the rest is counted as written.
const LOG_WRITE_MAX: usize = 64 * 1024;

/// The answer of every WASI function the sandbox does not implement.
const NOT_SUPPORTED: Provider = Provider::Answer(ENOSYS);

/// Every WASI preview1 function with its signature, the same under both module names
/// (§8.9). The ones not implemented below answer `ENOSYS`.
pub(crate) const WASI: Namespace = Namespace {
    modules: &["wasi_unstable", "wasi_snapshot_preview1"],
    imports: &[
        Import::new("args_get", Sig(&[I32, I32], &[I32]), plain!(empty_list_get)),
        Import::new(
            "args_sizes_get",
            Sig(&[I32, I32], &[I32]),
            with_env!(empty_list_sizes_get),
        ),
        Import::new(
            "environ_get",
            Sig(&[I32, I32], &[I32]),
            plain!(empty_list_get),
        ),
        Import::new(
            "environ_sizes_get",
            Sig(&[I32, I32], &[I32]),
            with_env!(empty_list_sizes_get),
        ),
        Import::new(
            "clock_res_get",
            Sig(&[I32, I32], &[I32]),
            with_env!(clock_res_get),
        ),
        Import::new(
            "clock_time_get",
            Sig(&[I32, I64, I32], &[I32]),
            with_env!(clock_time_get),
        ),
        Import::new(
            "fd_advise",
            Sig(&[I32, I64, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new("fd_allocate", Sig(&[I32, I64, I64], &[I32]), NOT_SUPPORTED),
        Import::new("fd_close", Sig(&[I32], &[I32]), plain!(fd_noop)),
        Import::new("fd_datasync", Sig(&[I32], &[I32]), plain!(fd_noop)),
        Import::new(
            "fd_fdstat_get",
            Sig(&[I32, I32], &[I32]),
            with_env!(fd_fdstat_get),
        ),
        Import::new(
            "fd_fdstat_set_flags",
            Sig(&[I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "fd_fdstat_set_rights",
            Sig(&[I32, I64, I64], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new("fd_filestat_get", Sig(&[I32, I32], &[I32]), NOT_SUPPORTED),
        Import::new(
            "fd_filestat_set_size",
            Sig(&[I32, I64], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "fd_filestat_set_times",
            Sig(&[I32, I64, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "fd_pread",
            Sig(&[I32, I32, I32, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "fd_prestat_get",
            Sig(&[I32, I32], &[I32]),
            plain!(fd_prestat_get),
        ),
        Import::new(
            "fd_prestat_dir_name",
            Sig(&[I32, I32, I32], &[I32]),
            plain!(fd_prestat_dir_name),
        ),
        Import::new(
            "fd_pwrite",
            Sig(&[I32, I32, I32, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "fd_read",
            Sig(&[I32, I32, I32, I32], &[I32]),
            with_env!(fd_read),
        ),
        Import::new(
            "fd_readdir",
            Sig(&[I32, I32, I32, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new("fd_renumber", Sig(&[I32, I32], &[I32]), NOT_SUPPORTED),
        Import::new(
            "fd_seek",
            Sig(&[I32, I64, I32, I32], &[I32]),
            plain!(fd_seek),
        ),
        Import::new("fd_sync", Sig(&[I32], &[I32]), plain!(fd_noop)),
        Import::new("fd_tell", Sig(&[I32, I32], &[I32]), plain!(fd_tell)),
        Import::new(
            "fd_write",
            Sig(&[I32, I32, I32, I32], &[I32]),
            with_env!(fd_write),
        ),
        Import::new(
            "path_create_directory",
            Sig(&[I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_filestat_get",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_filestat_set_times",
            Sig(&[I32, I32, I32, I32, I64, I64, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_link",
            Sig(&[I32, I32, I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_open",
            Sig(&[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_readlink",
            Sig(&[I32, I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_remove_directory",
            Sig(&[I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_rename",
            Sig(&[I32, I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_symlink",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "path_unlink_file",
            Sig(&[I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "poll_oneoff",
            Sig(&[I32, I32, I32, I32], &[I32]),
            plain!(poll_oneoff),
        ),
        Import::new("proc_exit", Sig(&[I32], &[]), plain!(proc_exit)),
        Import::new("proc_raise", Sig(&[I32], &[I32]), NOT_SUPPORTED),
        Import::new(
            "random_get",
            Sig(&[I32, I32], &[I32]),
            with_env!(random_get),
        ),
        Import::new("sched_yield", Sig(&[], &[I32]), plain!(sched_yield)),
        Import::new("sock_accept", Sig(&[I32, I32, I32], &[I32]), NOT_SUPPORTED),
        Import::new(
            "sock_recv",
            Sig(&[I32, I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new(
            "sock_send",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            NOT_SUPPORTED,
        ),
        Import::new("sock_shutdown", Sig(&[I32, I32], &[I32]), NOT_SUPPORTED),
    ],
};

/// Whether `fd` is one of the three standard streams.
fn is_stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

/// `args_get` / `environ_get`: there is nothing to copy.
fn empty_list_get(_list: i32, _buf: i32) -> i32 {
    ESUCCESS
}

/// `args_sizes_get` / `environ_sizes_get`: zero entries, zero bytes.
fn empty_list_sizes_get(env: FunctionEnvMut<'_, HostState>, count_ptr: i32, size_ptr: i32) -> i32 {
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match mem
        .write_u32_le(count_ptr, 0)
        .and_then(|()| mem.write_u32_le(size_ptr, 0))
    {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// Nanoseconds on a monotonic clock that starts with the process.
fn monotonic_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `clock_res_get(id, ret_ptr)`: 1 ns for the realtime (0) and monotonic (1) clocks.
fn clock_res_get(env: FunctionEnvMut<'_, HostState>, id: i32, ret_ptr: i32) -> i32 {
    if !(0..=1).contains(&id) {
        return EINVAL;
    }
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match mem.write_u64_le(ret_ptr, 1) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// `clock_time_get(id, precision, ret_ptr)`: u64 LE nanoseconds; 0 = realtime (since the
/// epoch), 1 = monotonic; other clocks are `EINVAL`.
fn clock_time_get(
    env: FunctionEnvMut<'_, HostState>,
    id: i32,
    _precision: i64,
    ret_ptr: i32,
) -> i32 {
    let now = match id {
        0 => now_ns(),
        1 => monotonic_ns(),
        _ => return EINVAL,
    };
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match mem.write_u64_le(ret_ptr, now) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// `fd_write(fd, iovs, iovs_len, nwritten_ptr)`: stdout (1) and stderr (2) go to the log and
/// count as fully written; other descriptors are `EBADF`.
fn fd_write(
    mut env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    if iovs_len as u32 > IOV_MAX {
        return EINVAL;
    }
    let mut text = Vec::new();
    {
        let Some(mem) = memory(&env) else {
            return EFAULT;
        };
        let Ok(total) = gather_iovecs(&mem, iovs, iovs_len, LOG_WRITE_MAX, &mut text) else {
            return EFAULT;
        };
        if mem.write_u32_le(nwritten, total).is_err() {
            return EFAULT;
        }
    }
    env.data_mut().output.print(fd as u32, &text);
    ESUCCESS
}

/// `fd_read(fd, iovs, iovs_len, nread_ptr)`: stdin (0) is empty (end of file at once);
/// other descriptors are `EBADF`.
fn fd_read(
    env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    _iovs: i32,
    _iovs_len: i32,
    nread: i32,
) -> i32 {
    if fd != 0 {
        return EBADF;
    }
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match mem.write_u32_le(nread, 0) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// `fd_close` / `fd_sync` / `fd_datasync`: accepted for the standard streams (nothing to
/// do), `EBADF` otherwise.
fn fd_noop(fd: i32) -> i32 {
    if is_stdio(fd) {
        ESUCCESS
    } else {
        EBADF
    }
}

/// `fd_fdstat_get(fd, ret_ptr)`: the standard streams are character devices (stdin
/// readable, stdout/stderr writable); the 24-byte fdstat is `{u8 filetype, u16 flags, u64
/// rights_base, u64 rights_inheriting}`.
fn fd_fdstat_get(env: FunctionEnvMut<'_, HostState>, fd: i32, ret_ptr: i32) -> i32 {
    const CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    if !is_stdio(fd) {
        return EBADF;
    }
    let rights = if fd == 0 {
        RIGHT_FD_READ
    } else {
        RIGHT_FD_WRITE
    };
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match mem.write(ret_ptr, &stat) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// `fd_prestat_get(fd, ret_ptr)`: there are no preopened directories; `EBADF` ends the
/// guest's preopen scan.
fn fd_prestat_get(_fd: i32, _ret_ptr: i32) -> i32 {
    EBADF
}

/// `fd_prestat_dir_name(fd, path, len)`: no preopens.
fn fd_prestat_dir_name(_fd: i32, _path: i32, _len: i32) -> i32 {
    EBADF
}

/// `fd_seek(fd, offset, whence, ret_ptr)`: streams cannot seek.
fn fd_seek(fd: i32, _offset: i64, _whence: i32, _ret_ptr: i32) -> i32 {
    if is_stdio(fd) {
        ESPIPE
    } else {
        EBADF
    }
}

/// `fd_tell(fd, ret_ptr)`: streams have no position.
fn fd_tell(fd: i32, _ret_ptr: i32) -> i32 {
    fd_seek(fd, 0, 0, 0)
}

/// `poll_oneoff(...)`: sleeping or waiting would stall the worker outside the CPU budget, so
/// it is not supported (a guest's `sleep` fails).
fn poll_oneoff(_in: i32, _out: i32, _nsubs: i32, _nevents: i32) -> i32 {
    ENOTSUP
}

/// `proc_exit(code)`: ends the current call with a trap (the instance is replaced).
fn proc_exit(code: i32) -> Result<(), HostAbort> {
    Err(HostAbort::Exit(code))
}

/// `random_get(buf, len)`: fills the buffer from a host generator seeded by the OS.
fn random_get(env: FunctionEnvMut<'_, HostState>, buf: i32, len: i32) -> i32 {
    let Some(mem) = memory(&env) else {
        return EFAULT;
    };
    match fill(&mem, buf, len, fastrand::fill) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// `sched_yield()`: returns at once.
fn sched_yield() -> i32 {
    ESUCCESS
}

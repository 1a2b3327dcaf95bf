//! SIGINT and SIGTERM: remove the temporary files of writes in flight (a signal runs
//! no destructors), print one line and exit with 128 + the signal number (130 for
//! Ctrl-C, 143 for SIGTERM).
//!
//! The handler only writes the signal number to a pipe (async-signal-safe); a thread
//! reading the pipe does the cleanup.

use std::sync::atomic::{AtomicI32, Ordering};

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) on a pipe is async-signal-safe; the buffer is one byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Installs the handlers; on failure the default (exit without cleanup) stays.
pub fn install() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return;
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    PIPE_WRITE.store(write_fd, Ordering::Relaxed);
    let spawned = std::thread::Builder::new().name("lumen-signals".into()).spawn(move || {
        let mut b = 0u8;
        loop {
            // SAFETY: reads one byte into `b`.
            let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
            if n == 1 {
                break;
            }
            if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
        let removed = lumen_core::io::remove_temp_files();
        let what = if b as libc::c_int == libc::SIGINT { "interrupted" } else { "terminated" };
        let note = if removed > 0 { format!(" (removed {removed} partly written file(s))") } else { String::new() };
        eprintln!("error: {what}{note}");
        std::process::exit(128 + b as i32);
    });
    if spawned.is_err() {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a plain handler and SA_RESTART, so other
        // threads' system calls are restarted rather than failing with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

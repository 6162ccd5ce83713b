//! The process's descriptor limit. Most systems start a process with a soft limit of 1,024
//! descriptors and a much higher hard limit; with 1,024, a thousand idle connections leave
//! no descriptor for the database, a gateway or an operator. Raising the soft limit to the
//! hard one at start lets the connection caps, which keep room per source, decide instead.

use std::io;

/// The soft and hard `RLIMIT_NOFILE`.
// rlim_t is u64 on Linux but not on every unix.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (before, after).
// rlim_t is u64 on Linux but not on every unix.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur as u64;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur as u64))
}

#[cfg(not(unix))]
pub fn nofile() -> io::Result<(u64, u64)> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(unix))]
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let (before, after) = super::raise_nofile().unwrap();
        let (soft, hard) = super::nofile().unwrap();
        assert!(after >= before);
        assert_eq!((soft, hard), (after, hard));
        assert_eq!(soft, hard);
    }
}

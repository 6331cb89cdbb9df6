//! Signal names and numbers, as `docker kill -s` and `STOPSIGNAL` take them.
//! The numbers are Linux's, whatever the host: containers and their images
//! speak them.

#[cfg(target_os = "linux")]
use libc as sig;
pub use sig::{SIGINT, SIGKILL, SIGTERM};

/// Linux's numbers (x86, Arm and most others) where libc has the host's.
#[cfg(not(target_os = "linux"))]
mod sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGILL: i32 = 4;
    pub const SIGTRAP: i32 = 5;
    pub const SIGABRT: i32 = 6;
    pub const SIGBUS: i32 = 7;
    pub const SIGFPE: i32 = 8;
    pub const SIGKILL: i32 = 9;
    pub const SIGUSR1: i32 = 10;
    pub const SIGSEGV: i32 = 11;
    pub const SIGUSR2: i32 = 12;
    pub const SIGPIPE: i32 = 13;
    pub const SIGALRM: i32 = 14;
    pub const SIGTERM: i32 = 15;
    pub const SIGCHLD: i32 = 17;
    pub const SIGCONT: i32 = 18;
    pub const SIGSTOP: i32 = 19;
    pub const SIGTSTP: i32 = 20;
    pub const SIGTTIN: i32 = 21;
    pub const SIGTTOU: i32 = 22;
    pub const SIGURG: i32 = 23;
    pub const SIGXCPU: i32 = 24;
    pub const SIGXFSZ: i32 = 25;
    pub const SIGVTALRM: i32 = 26;
    pub const SIGPROF: i32 = 27;
    pub const SIGWINCH: i32 = 28;
    pub const SIGIO: i32 = 29;
    pub const SIGPWR: i32 = 30;
    pub const SIGSYS: i32 = 31;
}

/// Signal number from a name (`TERM`, `SIGTERM`) or number (`15`).
pub fn number(name: &str) -> Option<i32> {
    let n = name.trim();
    if let Ok(v) = n.parse::<i32>() {
        return (1..=64).contains(&v).then_some(v);
    }
    let up = n.to_ascii_uppercase();
    let up = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match up {
        "HUP" => sig::SIGHUP,
        "INT" => sig::SIGINT,
        "QUIT" => sig::SIGQUIT,
        "ILL" => sig::SIGILL,
        "TRAP" => sig::SIGTRAP,
        "ABRT" | "IOT" => sig::SIGABRT,
        "BUS" => sig::SIGBUS,
        "FPE" => sig::SIGFPE,
        "KILL" => sig::SIGKILL,
        "USR1" => sig::SIGUSR1,
        "SEGV" => sig::SIGSEGV,
        "USR2" => sig::SIGUSR2,
        "PIPE" => sig::SIGPIPE,
        "ALRM" => sig::SIGALRM,
        "TERM" => sig::SIGTERM,
        "CHLD" => sig::SIGCHLD,
        "CONT" => sig::SIGCONT,
        "STOP" => sig::SIGSTOP,
        "TSTP" => sig::SIGTSTP,
        "TTIN" => sig::SIGTTIN,
        "TTOU" => sig::SIGTTOU,
        "URG" => sig::SIGURG,
        "XCPU" => sig::SIGXCPU,
        "XFSZ" => sig::SIGXFSZ,
        "VTALRM" => sig::SIGVTALRM,
        "PROF" => sig::SIGPROF,
        "WINCH" => sig::SIGWINCH,
        "IO" | "POLL" => sig::SIGIO,
        "PWR" => sig::SIGPWR,
        "SYS" => sig::SIGSYS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(number("TERM"), Some(15));
        assert_eq!(number("SIGKILL"), Some(9));
        assert_eq!(number("usr1"), Some(libc::SIGUSR1));
        assert_eq!(number("2"), Some(2));
        assert_eq!(number("0"), None);
        assert_eq!(number("BOGUS"), None);
    }
}

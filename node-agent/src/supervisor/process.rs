//! Processes and what `/proc` says about them.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How often an adopted process (not our child, so no `wait`) is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(250);

/// The fields of `/proc/PID/stat` the supervisor needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks after boot; with the pid it identifies a process across pid reuse.
    pub start_time: u64,
}

pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name may contain spaces and parentheses; the fields resume after the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn cmdline(pid: u32) -> Option<Vec<OsString>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
    )
}

/// Alive and the same process as when first seen: zombies count as dead, they only await
/// reaping. A leader thread shows as a zombie while the process's other threads still exit
/// (holding its sockets open), so a process is dead only once those are gone too.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| {
        s.start_time == start_time
            && match s.state {
                'X' => false,
                'Z' => other_threads_remain(pid),
                _ => true,
            }
    })
}

/// Whether a process whose leader thread has exited still has other threads.
fn other_threads_remain(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .any(|t| t.file_name() != pid.to_string().as_str())
        })
        .unwrap_or(false)
}

/// How a process ended.
#[derive(Clone, Copy, Debug)]
pub enum Exit {
    Status(ExitStatus),
    /// An adopted process is not our child, so its status is not ours to collect.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Status(status) => match (status.code(), status.signal()) {
                (Some(code), _) => write!(f, "status {code}"),
                (None, Some(sig)) => match Signal::try_from(sig) {
                    Ok(name) => write!(f, "signal {sig} ({name})"),
                    Err(_) => write!(f, "signal {sig}"),
                },
                (None, None) => write!(f, "{status}"),
            },
            Exit::Unknown => f.write_str("an unknown status (adopted process)"),
        }
    }
}

/// A supervised server process: one we spawned, or one a previous agent spawned and we adopted.
pub enum Proc {
    Child {
        child: tokio::process::Child,
        pid: u32,
        start_time: u64,
    },
    Adopted {
        pid: u32,
        start_time: u64,
        own_group: bool,
    },
}

impl Proc {
    pub fn pid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } | Proc::Adopted { pid, .. } => *pid,
        }
    }

    pub fn start_time(&self) -> u64 {
        match self {
            Proc::Child { start_time, .. } | Proc::Adopted { start_time, .. } => *start_time,
        }
    }

    /// Waits for the process to end. Cancel-safe, so it can sit in a `select!`.
    pub async fn wait(&mut self) -> Exit {
        match self {
            Proc::Child {
                child,
                pid,
                start_time,
            } => match child.wait().await {
                Ok(status) => Exit::Status(status),
                Err(e) => {
                    // Only happens if someone else reaped it; fall back to watching /proc.
                    tracing::warn!(pid = *pid, error = %e, "cannot wait for child; polling /proc");
                    while is_alive(*pid, *start_time) {
                        tokio::time::sleep(ADOPTED_POLL).await;
                    }
                    Exit::Unknown
                }
            },
            Proc::Adopted {
                pid, start_time, ..
            } => {
                while is_alive(*pid, *start_time) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                Exit::Unknown
            }
        }
    }

    /// `Some` once the process has ended (reaping it if it is our child).
    pub fn try_exit(&mut self) -> Option<Exit> {
        match self {
            Proc::Child {
                child,
                pid,
                start_time,
            } => match child.try_wait() {
                Ok(Some(status)) => Some(Exit::Status(status)),
                Ok(None) => None,
                Err(_) => (!is_alive(*pid, *start_time)).then_some(Exit::Unknown),
            },
            Proc::Adopted {
                pid, start_time, ..
            } => (!is_alive(*pid, *start_time)).then_some(Exit::Unknown),
        }
    }

    /// Signals the whole process group (servers may fork workers), or just the process if it
    /// was adopted without a group of its own. `Ok` if it is already gone.
    pub fn signal_group(&self, signal: Signal) -> Result<(), Errno> {
        let pid = Pid::from_raw(self.pid() as i32);
        let own_group = match self {
            Proc::Child { .. } => true,
            Proc::Adopted { own_group, .. } => *own_group,
        };
        let result = if own_group {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        };
        match result {
            Err(Errno::ESRCH) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// After the leader has exited: kills what is left of its process group (workers would
    /// keep its ports). Nothing for a process adopted without a group of its own, whose pid
    /// alone may already belong to someone else.
    pub fn kill_leftovers(&self) {
        let own_group = match self {
            Proc::Child { .. } => true,
            Proc::Adopted { own_group, .. } => *own_group,
        };
        if own_group {
            let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        }
    }

    /// Signals only the group leader (a reload must not reach workers that handle it differently).
    pub fn signal_leader(&self, signal: Signal) -> Result<(), Errno> {
        if !is_alive(self.pid(), self.start_time()) {
            return Err(Errno::ESRCH);
        }
        kill(Pid::from_raw(self.pid() as i32), signal)
    }
}

/// A socket's inode from `/proc/net/tcp{,6}` when something listens on `port`.
pub fn parse_listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *fields.get(3)? == LISTEN)
                .then(|| fields.get(9)?.parse().ok())?
        })
        .collect()
}

/// Whether `pid` is `leader` or a member of its process group (a server's workers).
pub fn in_group_of(pid: u32, leader: u32) -> bool {
    pid == leader || stat(pid).is_some_and(|s| s.pgrp == leader as i32)
}

/// Who holds a listening socket on `port`: `None` if the port is free, `Some(None)` if it is
/// taken but the owner is not visible (another user's process while not root). Blocking: walks
/// every process's fds, so call it from `spawn_blocking`.
pub fn port_owner(port: u16) -> Option<Option<u32>> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| parse_listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<OsString> = inodes
        .iter()
        .map(|i| OsString::from(format!("socket:[{i}]")))
        .collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Some(None);
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| targets.iter().any(|t| *t == target.as_os_str()))
            {
                return Some(Some(pid));
            }
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let line = "1234 (ice cast) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 200";
        let s = parse_stat(line).expect("parses");
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                pgrp: 1234,
                start_time: 987654
            }
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F4A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   1: 0100007F:1F4A 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0
   2: 00000000:1F4B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0";
        assert_eq!(parse_listening_inodes(table, 8010), vec![4242]);
        assert_eq!(parse_listening_inodes(table, 8011), vec![4444]);
        assert!(parse_listening_inodes(table, 8012).is_empty());
        let v6 = "header\n   0: 00000000000000000000000000000000:1F4A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0";
        assert_eq!(parse_listening_inodes(v6, 8010), vec![5555]);
    }
}

//! Sign-in throttling: failed attempts are counted in memory per client IP and per username, in a
//! sliding window. Past the limit, attempts are refused with 429 before any password work, until
//! the oldest failure in the window ages out (that wait is the `Retry-After`).
//!
//! Both keys matter: per username stops a slow guess at one account from many addresses, per IP
//! stops one address trying many accounts. A successful sign-in clears the username's count.
//! Memory is bounded: at most `MAX_TRACKED` subjects, each with at most its limit of timestamps;
//! when full, expired subjects go first, then the one idle longest. IPv6 addresses count per /64
//! (one host usually holds a whole /64). Behind a reverse proxy every client has the proxy's
//! address, so the per-IP limit then applies to all of them together (the per-username one is
//! unaffected).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

pub const WINDOW: Duration = Duration::from_secs(5 * 60);
pub const MAX_FAILURES_PER_USER: usize = 10;
pub const MAX_FAILURES_PER_IP: usize = 30;
/// Subjects (addresses and usernames) remembered at most.
pub const MAX_TRACKED: usize = 10_000;
/// Longest username kept as a key (longer ones are cut; the sign-in refuses them anyway).
const MAX_USERNAME_KEY: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Ip(IpAddr),
    User(String),
}

impl Subject {
    fn ip(ip: IpAddr) -> Self {
        Self::Ip(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut seg = v6.segments();
                    seg[4..].fill(0);
                    IpAddr::V6(seg.into())
                }
            },
            v4 => v4,
        })
    }

    fn user(name: &str) -> Self {
        Self::User(name.trim().chars().take(MAX_USERNAME_KEY).collect())
    }

    fn limit(&self) -> usize {
        match self {
            Self::Ip(_) => MAX_FAILURES_PER_IP,
            Self::User(_) => MAX_FAILURES_PER_USER,
        }
    }
}

#[derive(Default)]
pub struct LoginLimiter {
    // A std lock: held for a few map operations, never across an await.
    failures: Mutex<HashMap<Subject, VecDeque<Instant>>>,
}

fn subjects(ip: Option<IpAddr>, username: &str) -> impl Iterator<Item = Subject> {
    ip.map(Subject::ip)
        .into_iter()
        .chain(std::iter::once(Subject::user(username)))
}

fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

impl LoginLimiter {
    /// `Err(wait)` when the address or the username has no attempts left.
    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> Result<(), Duration> {
        self.check_at(ip, username, Instant::now())
    }

    pub fn failed(&self, ip: Option<IpAddr>, username: &str) {
        self.failed_at(ip, username, Instant::now());
    }

    /// A successful sign-in: the username starts afresh (its address's count stays).
    pub fn succeeded(&self, username: &str) {
        self.lock().remove(&Subject::user(username));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_at(&self, ip: Option<IpAddr>, username: &str, now: Instant) -> Result<(), Duration> {
        let map = self.lock();
        let wait = subjects(ip, username)
            .filter_map(|s| {
                let times = map.get(&s)?;
                let recent: Vec<&Instant> = times
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < WINDOW)
                    .collect();
                (recent.len() >= s.limit())
                    .then(|| (*recent[0] + WINDOW).saturating_duration_since(now))
            })
            .max();
        match wait {
            Some(w) => Err(w.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    fn failed_at(&self, ip: Option<IpAddr>, username: &str, now: Instant) {
        let mut map = self.lock();
        for s in subjects(ip, username) {
            if !map.contains_key(&s) && map.len() >= MAX_TRACKED {
                make_room(&mut map, now);
            }
            let limit = s.limit();
            let times = map.entry(s).or_default();
            expire(times, now);
            times.push_back(now);
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Drops subjects with nothing in the window; if none had, the one whose last failure is oldest.
fn make_room(map: &mut HashMap<Subject, VecDeque<Instant>>, now: Instant) {
    map.retain(|_, times| {
        expire(times, now);
        !times.is_empty()
    });
    if map.len() >= MAX_TRACKED
        && let Some(idle) = map
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(s, _)| s.clone())
    {
        map.remove(&idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn per_user_limit_and_its_wait() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES_PER_USER {
            assert!(l.check_at(Some(A), "alice", t0).is_ok(), "attempt {i}");
            l.failed_at(Some(A), "alice", t0 + Duration::from_secs(i as u64));
        }
        // From any address, alice is locked until her oldest failure leaves the window.
        let now = t0 + Duration::from_secs(60);
        let wait = l.check_at(Some(B), "alice", now).unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(60));
        // Another user from the same address may still try.
        assert!(l.check_at(Some(A), "bob", now).is_ok());
        // After the window the first failure has aged out.
        assert!(l.check_at(Some(A), "alice", t0 + WINDOW).is_ok());
        // A success clears alice's count.
        l.succeeded("alice");
        assert!(l.check_at(Some(B), "alice", now).is_ok());
    }

    #[test]
    fn per_ip_limit_across_usernames() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES_PER_IP {
            l.failed_at(Some(A), &format!("user{i}"), t0);
        }
        assert!(l.check_at(Some(A), "someone-new", t0).is_err());
        assert!(l.check_at(Some(B), "someone-new", t0).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(Subject::ip(x), Subject::ip(y));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Subject::ip(mapped), Subject::ip(A));
    }

    #[test]
    fn memory_stays_bounded() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED + 500) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i as u32 + 1));
            l.failed_at(Some(ip), "victim", t0 + Duration::from_millis(i as u64));
        }
        assert!(l.tracked() <= MAX_TRACKED);
        // The username being attacked is still remembered (it failed most recently).
        assert!(l.check_at(None, "victim", t0).is_err());
    }
}

//! Rate limits of the model-backed endpoints: one keyed limiter per client IP and one per
//! user (or session), from `SWITCHBOARD_RATE_*`. Over a limit is `429 rate_limited` with
//! `Retry-After`. `AppState` holds them; the `caller` extractor checks them.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{Config, Rate};
use crate::error::ApiError;

/// The per-IP and per-user limiters.
pub struct Limits {
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    user: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter<K: Hash + Eq + Clone>(r: &Rate) -> DefaultKeyedRateLimiter<K> {
    let period = r.per / r.count.get();
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(r.count);
    governor::RateLimiter::keyed(quota)
}

impl Limits {
    /// Limiters for the configured rates; forgets idle keys every minute.
    pub fn new(config: &Config, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let limits = Arc::new(Self {
            ip: config.access.rate_ip.as_ref().map(limiter),
            user: config.access.rate_user.as_ref().map(limiter),
        });
        let weak = Arc::downgrade(&limits);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(l) = weak.upgrade() else { return };
                if let Some(ip) = &l.ip {
                    ip.retain_recent();
                }
                if let Some(u) = &l.user {
                    u.retain_recent();
                }
            }
        });
        limits
    }

    pub(crate) fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.ip, ip) {
            (Some(l), Some(ip)) => check(l, &ip, "this client", "ip"),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_user(&self, key: String) -> Result<(), ApiError> {
        match &self.user {
            Some(l) => check(l, &key, "this user", "user"),
            None => Ok(()),
        }
    }
}

fn check<K: Hash + Eq + Clone>(
    l: &DefaultKeyedRateLimiter<K>,
    key: &K,
    who: &str,
    scope: &'static str,
) -> Result<(), ApiError> {
    l.check_key(key).map_err(|not_until| {
        metrics::counter!("switchboard_rate_limited_total", "scope" => scope).increment(1);
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from {who}; retry in {secs} s"),
        )
        .with_retry_after(secs.max(1))
    })
}

//! The configuration sections the scheduler reads, from the shared option declarations.

use fresco_common::conf::{
    ApiSection, ConfigError, DatabaseSection, DefaultSection, InternalAuthSection,
    InternalTlsSection, NotificationsSection, QuotaSection, RawConfig, RetentionSection,
    SchedulerSection,
};

/// Every option the scheduler uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default: DefaultSection,
    /// Only `allowed_image_prefixes`: what the executions the scheduler queues may run.
    pub api: ApiSection,
    pub scheduler: SchedulerSection,
    pub internal_auth: InternalAuthSection,
    pub internal_tls: InternalTlsSection,
    pub database: DatabaseSection,
    pub quota: QuotaSection,
    pub retention: RetentionSection,
    pub notifications: NotificationsSection,
}

impl Settings {
    pub fn from_config(raw: &RawConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            default: raw.section()?,
            api: raw.section()?,
            scheduler: raw.section()?,
            internal_auth: raw.section()?,
            internal_tls: raw.section()?,
            database: raw.section()?,
            quota: raw.section()?,
            retention: raw.section()?,
            notifications: raw.section()?,
        })
    }
}

//! Pusher Channels compatibility, the pure half: the apps and their limits, channel kinds
//! and names, the signatures (channel auth, user sign-in, REST requests) and socket ids.
//! The wire dialect is `dialect::pusher`, the commands run in `engine::pusher`, the REST
//! API is served by `server::pusher_rest`; the reference is Pusher's protocol 7 as pusher-js
//! 8, laravel-echo 2 and the `pusher` server SDKs speak it.
//!
//! Invariant: each app is a namespace. Its channels live in the engine under
//! [`App::internal_name`] (`ID#CHANNEL`): `#` is in no native channel name, so native
//! clients, the dashboard and other apps never see them.

pub mod auth;
#[cfg(feature = "pusher")]
pub mod cache;
pub mod channel;
#[cfg(feature = "pusher")]
pub mod rest;
pub mod socket_id;

use std::fmt;
use std::time::Duration;

use crate::units::{parse_duration, parse_size};

pub use channel::ChannelKind;

/// The longest event name (`client-...` or a REST event), in bytes.
pub const MAX_EVENT_NAME: usize = 200;

/// One Pusher app: the id the REST API names, the key clients connect with, the secret
/// that signs both.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    /// The app id (`/apps/{id}/...`); digits in most SDKs.
    pub id: String,
    /// The public key (`/app/{key}`).
    pub key: String,
    /// The secret, never sent anywhere.
    pub secret: String,
    /// Its own limits, when it has some (else the server's defaults).
    pub limits: Option<AppLimits>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"…")
            .finish()
    }
}

impl App {
    /// Reads `ID:KEY:SECRET` (`--pusher-app`, or one entry of `ROLLCALL_PUSHER_APPS`).
    pub fn parse(text: &str) -> Result<App, String> {
        let mut parts = text.splitn(3, ':');
        let (Some(id), Some(key), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a Pusher app is ID:KEY:SECRET".into());
        };
        let plain = |what: &str, value: &str| {
            let ok = !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "Pusher app {what} {value:?}: 1 to 64 characters of letters, digits, - _ ."
                ))
            }
        };
        plain("id", id)?;
        plain("key", key)?;
        if secret.is_empty() {
            return Err(format!("Pusher app {id}: the secret is empty"));
        }
        Ok(App {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            limits: None,
        })
    }

    /// The engine's name of this app's channel `channel`: `ID#CHANNEL`.
    pub fn internal_name(&self, channel: &str) -> String {
        let mut name = String::with_capacity(self.id.len() + 1 + channel.len());
        name.push_str(&self.id);
        name.push('#');
        name.push_str(channel);
        name
    }
}

/// The app channel an engine channel name stands for: `Some((app id, channel))` for
/// `ID#CHANNEL`, `None` for a native channel.
pub fn split_internal(name: &str) -> Option<(&str, &str)> {
    name.split_once('#')
}

/// Checks a channel name as the engine holds it (from another node, through Redis): a native
/// channel name, or an app's `ID#CHANNEL`.
pub fn validate_engine_name(name: &str) -> Result<(), String> {
    match split_internal(name) {
        Some((id, channel)) => {
            let plain_id = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !plain_id {
                return Err(format!("app id {id:?} is not plain"));
            }
            channel::validate(channel)
        }
        None => crate::names::validate_channel(name).map_err(|e| e.to_string()),
    }
}

/// True for an engine channel name that belongs to a Pusher app (hidden from native
/// clients, watchers and endpoints).
pub fn is_internal(name: &str) -> bool {
    name.contains('#')
}

/// What one app allows. Every app starts from the server's defaults (the `--pusher-*`
/// flags) and may have its own ([`App::limits`], `--pusher-app-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLimits {
    /// Whether clients may send `client-` events on private and presence channels (Laravel
    /// Echo's whisper). Default true.
    pub client_events: bool,
    /// Members one presence channel may hold. Default 100 (Pusher's own limit).
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, serialized. Default 2 KiB.
    pub max_user_info: usize,
    /// The `activity_timeout` advertised: a client pings after this much silence.
    /// Default 30 s (proxies often cut idle sockets at 60).
    pub activity_timeout: Duration,
    /// Largest `data` of one event, from a client or the REST API. Default 10 KiB.
    pub max_event_data: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            client_events: true,
            max_presence_members: 100,
            max_user_info: 2 << 10,
            activity_timeout: Duration::from_secs(30),
            max_event_data: 10 << 10,
        }
    }
}

impl AppLimits {
    /// Sets the limit `name` (`client_events`, `max_presence_members`, `max_user_info`,
    /// `activity_timeout`, `max_event_data`) from its text (`on`/`off`, a count, a size as
    /// `2KiB`, a duration as `30s`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let count = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{name}: {value:?} is not a whole number"))
        };
        let size = || parse_size(value).map_err(|e| format!("{name}: {e}"));
        match name {
            "client_events" => {
                self.client_events = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("client_events: {value:?} is not on or off")),
                }
            }
            "max_presence_members" => self.max_presence_members = count()?,
            "max_user_info" => self.max_user_info = size()?,
            "max_event_data" => self.max_event_data = size()?,
            "activity_timeout" => {
                self.activity_timeout =
                    parse_duration(value).map_err(|e| format!("{name}: {e}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown limit {name:?}: client_events, max_presence_members, \
                     max_user_info, activity_timeout or max_event_data"
                ))
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_presence_members == 0 || self.max_user_info == 0 || self.max_event_data == 0 {
            return Err("Pusher limits must be at least 1".into());
        }
        if self.activity_timeout.as_secs() == 0 {
            return Err("the Pusher activity timeout is at least 1s".into());
        }
        Ok(())
    }
}

/// The Pusher apps and the limits they start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PusherSettings {
    /// The apps; none turns Pusher compatibility off (`/app/...` and `/apps/...` are 404).
    pub apps: Vec<App>,
    /// The limits of an app that has none of its own.
    pub defaults: AppLimits,
}

impl PusherSettings {
    /// The app whose key is `key`, with its index.
    pub fn app_by_key(&self, key: &str) -> Option<(u16, &App)> {
        self.find(|app| app.key == key)
    }

    /// The app whose id is `id`, with its index.
    pub fn app_by_id(&self, id: &str) -> Option<(u16, &App)> {
        self.find(|app| app.id == id)
    }

    /// The app at `index`.
    pub fn app(&self, index: u16) -> Option<&App> {
        self.apps.get(usize::from(index))
    }

    fn find(&self, matches: impl Fn(&App) -> bool) -> Option<(u16, &App)> {
        self.apps
            .iter()
            .enumerate()
            .find(|(_, app)| matches(app))
            .and_then(|(index, app)| Some((u16::try_from(index).ok()?, app)))
    }

    /// Checks the apps (distinct ids and keys, at most 65,536) and the limits.
    pub fn validate(&self) -> Result<(), String> {
        if !cfg!(feature = "pusher") && !self.apps.is_empty() {
            return Err(
                "Pusher apps are configured, but rollcall is built without its `pusher` \
                        feature"
                    .into(),
            );
        }
        if self.apps.len() > usize::from(u16::MAX) + 1 {
            return Err("at most 65536 Pusher apps".into());
        }
        for (index, app) in self.apps.iter().enumerate() {
            let earlier = &self.apps[..index];
            if earlier.iter().any(|other| other.id == app.id) {
                return Err(format!("Pusher app id {} is given twice", app.id));
            }
            if earlier.iter().any(|other| other.key == app.key) {
                return Err(format!("Pusher app key {} is given twice", app.key));
            }
        }
        self.defaults.validate()?;
        for app in &self.apps {
            if let Some(limits) = &app.limits {
                limits
                    .validate()
                    .map_err(|e| format!("app {}: {e}", app.id))?;
            }
        }
        Ok(())
    }

    /// The limits of the app at `index` (its own, else the defaults).
    pub fn limits(&self, index: u16) -> AppLimits {
        self.app(index)
            .and_then(|app| app.limits)
            .unwrap_or(self.defaults)
    }

    /// Sets one limit of app `id` from `NAME=VALUE` (`--pusher-app-limit ID:NAME=VALUE`),
    /// starting from the defaults: give the defaults first.
    pub fn set_app_limit(&mut self, text: &str) -> Result<(), String> {
        let malformed = || "a Pusher app limit is ID:NAME=VALUE".to_owned();
        let (id, setting) = text.split_once(':').ok_or_else(malformed)?;
        let (name, value) = setting.split_once('=').ok_or_else(malformed)?;
        let defaults = self.defaults;
        let app = self
            .apps
            .iter_mut()
            .find(|app| app.id == id)
            .ok_or_else(|| format!("no Pusher app {id} (give --pusher-app first)"))?;
        app.limits.get_or_insert(defaults).set(name, value)
    }

    /// The apps of `ROLLCALL_PUSHER_APPS`: `ID:KEY:SECRET` entries separated by commas.
    pub fn parse_list(text: &str) -> Result<Vec<App>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(App::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_parse_and_hide_their_secret() {
        let app = App::parse("1:key-1:s3:cr:et").expect("valid");
        assert_eq!((app.id.as_str(), app.key.as_str()), ("1", "key-1"));
        assert_eq!(
            app.secret, "s3:cr:et",
            "the secret is everything after the key"
        );
        assert!(!format!("{app:?}").contains("s3"), "{app:?}");
        for bad in ["1:key", "1::secret", ":k:s", "1:k:", "a b:k:s", "1:k#:s"] {
            assert!(App::parse(bad).is_err(), "{bad}");
        }
        let list = PusherSettings::parse_list("1:a:x, 2:b:y,").expect("two apps");
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn each_app_may_have_its_own_limits() {
        let mut settings = PusherSettings {
            apps: PusherSettings::parse_list("1:a:x,2:b:y").expect("apps"),
            ..PusherSettings::default()
        };
        settings
            .defaults
            .set("max_presence_members", "50")
            .expect("a count");
        settings
            .set_app_limit("2:client_events=off")
            .expect("a limit");
        settings
            .set_app_limit("2:activity_timeout=1m")
            .expect("a duration");
        assert_eq!(settings.limits(0).max_presence_members, 50);
        assert!(settings.limits(0).client_events);
        let two = settings.limits(1);
        assert_eq!(
            (two.client_events, two.max_presence_members),
            (false, 50),
            "from the defaults"
        );
        assert_eq!(two.activity_timeout, Duration::from_secs(60));
        for bad in [
            "3:client_events=off",
            "2:nope=1",
            "2:max_user_info=lots",
            "2",
            "2:x",
        ] {
            assert!(settings.set_app_limit(bad).is_err(), "{bad}");
        }
        settings.set_app_limit("1:max_event_data=0").expect("set");
        assert!(
            settings.validate().is_err(),
            "a zero limit is refused at start"
        );
    }

    #[test]
    fn apps_are_distinct_namespaces() {
        let settings = PusherSettings {
            apps: PusherSettings::parse_list("1:a:x,2:b:y").expect("apps"),
            ..PusherSettings::default()
        };
        if cfg!(feature = "pusher") {
            assert_eq!(settings.validate(), Ok(()));
        } else {
            let refused = settings
                .validate()
                .expect_err("no apps without the feature");
            assert!(refused.contains("`pusher` feature"), "{refused}");
        }
        assert_eq!(settings.app_by_key("b").map(|(i, _)| i), Some(1));
        assert_eq!(
            settings.app_by_id("1").map(|(_, a)| a.key.as_str()),
            Some("a")
        );
        let (_, one) = settings.app_by_id("1").expect("app 1");
        let name = one.internal_name("presence-room");
        assert_eq!(split_internal(&name), Some(("1", "presence-room")));
        assert!(is_internal(&name) && !is_internal("room:lobby"));
        let twice = PusherSettings {
            apps: PusherSettings::parse_list("1:a:x,1:b:y").expect("apps"),
            ..PusherSettings::default()
        };
        assert!(twice.validate().is_err());
    }
}

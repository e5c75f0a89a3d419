//! The Pusher REST API, `/apps/{id}/...`, as the `pusher` server SDKs call it: events,
//! batches, channel lists and info, presence users, terminating a user's connections.
//! Every call is signed with the app's secret ([`crate::pusher::rest::verify`]); errors are
//! JSON `{"error":MESSAGE}` with the statuses Pusher uses (400, 401, 404, 413).

use super::Server;
use crate::engine::PusherChannel;
use crate::http::{Request, Response};
use crate::model::push_json_str;
use crate::pusher::rest::{self, Params, RestError, Signed, Trigger};
use crate::pusher::ChannelKind;
use crate::wheel::Millis;

/// A call of the REST API, once its app and signature are known good.
enum Call<'a> {
    Events,
    BatchEvents,
    Channels,
    Channel(&'a str),
    Users(&'a str),
    Terminate(&'a str),
}

impl Server {
    /// Serves one REST API request.
    pub(super) fn pusher_api(&mut self, request: &Request, now: Millis) -> Response {
        match self.pusher_call(request, now) {
            Ok(body) => Response::json(200, body),
            Err(error) => {
                let mut body = String::from(r#"{"error":"#);
                push_json_str(&mut body, &error.message);
                body.push('}');
                Response::json(error.status, body)
            }
        }
    }

    fn pusher_call(&mut self, request: &Request, now: Millis) -> Result<String, RestError> {
        let not_found = || RestError::new(404, format!("no such path: {}", request.path));
        let rest = request.path.strip_prefix("/apps/").ok_or_else(not_found)?;
        let (id, path) = rest.split_once('/').ok_or_else(not_found)?;
        let (app, found) = self
            .config
            .pusher
            .app_by_id(id)
            .ok_or_else(|| RestError::new(404, format!("unknown app {id}")))?;
        let signed = Signed {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            body: &request.body,
        };
        let now_secs = self.engine.unix_millis(now) / 1000;
        let params = rest::verify(found, &signed, now_secs)?;
        let call = route(&request.method, path).ok_or_else(not_found)?;
        let max_data = self.config.pusher.limits(app).max_event_data;
        match call {
            Call::Events => {
                let trigger = rest::parse_trigger(&request.body, max_data)?;
                let info = self.trigger(app, &trigger, now);
                Ok(info.unwrap_or_else(|| "{}".to_owned()))
            }
            Call::BatchEvents => {
                let batch = rest::parse_batch(&request.body, max_data)?;
                let infos: Vec<Option<String>> = batch
                    .iter()
                    .map(|trigger| self.trigger(app, trigger, now))
                    .collect();
                if infos.iter().all(Option::is_none) {
                    return Ok("{}".to_owned());
                }
                let infos: Vec<String> = infos
                    .into_iter()
                    .map(|info| info.unwrap_or_else(|| "{}".to_owned()))
                    .collect();
                Ok(format!(r#"{{"batch":[{}]}}"#, infos.join(",")))
            }
            Call::Channels => self.channels(app, &params),
            Call::Channel(wire) => self.channel_info(app, &decoded(wire)?, &params),
            Call::Users(wire) => self.users(app, &decoded(wire)?),
            Call::Terminate(user) => {
                let user = decoded(user)?;
                self.engine.pusher_terminate(app, &user, now);
                Ok("{}".to_owned())
            }
        }
    }

    /// Triggers one event; the `info` it asked for, as `{"channels":{...}}`.
    fn trigger(&mut self, app: u16, trigger: &Trigger, now: Millis) -> Option<String> {
        self.engine.pusher_trigger(
            app,
            &trigger.channels,
            &trigger.name,
            &trigger.data,
            trigger.socket_id.as_deref(),
            now,
        );
        let info = trigger.info.as_deref()?;
        let mut out = String::from(r#"{"channels":{"#);
        for (index, wire) in trigger.channels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let channel = self.engine.pusher_channel(app, wire);
            push_json_str(&mut out, wire);
            out.push(':');
            out.push_str(&attributes(wire, channel.as_ref(), info));
        }
        out.push_str("}}");
        Some(out)
    }

    /// `GET /apps/{id}/channels`: the occupied channels, `filter_by_prefix`, and
    /// `info=user_count` for presence channels only.
    fn channels(&self, app: u16, params: &Params) -> Result<String, RestError> {
        let prefix = params.get("filter_by_prefix").map_or("", String::as_str);
        let info = params.get("info").map_or("", String::as_str);
        if wants(info, "user_count") && !prefix.starts_with("presence-") {
            return Err(RestError::new(
                400,
                "info=user_count needs filter_by_prefix=presence-",
            ));
        }
        let mut out = String::from(r#"{"channels":{"#);
        for (index, channel) in self.engine.pusher_channels(app, prefix).iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_json_str(&mut out, &channel.name);
            out.push(':');
            out.push_str(&attributes(&channel.name, Some(channel), info));
        }
        out.push_str("}}");
        Ok(out)
    }

    /// `GET /apps/{id}/channels/{channel}`: `occupied`, and the counts `info` asks for.
    fn channel_info(&self, app: u16, wire: &str, params: &Params) -> Result<String, RestError> {
        crate::pusher::channel::validate(wire).map_err(|e| RestError::new(400, e))?;
        let info = params.get("info").map_or("", String::as_str);
        if wants(info, "user_count") && ChannelKind::of(wire) != ChannelKind::Presence {
            return Err(RestError::new(400, "user_count is for presence channels"));
        }
        let channel = self.engine.pusher_channel(app, wire);
        let mut out = format!(r#"{{"occupied":{}"#, channel.is_some());
        let attributes = attributes(wire, channel.as_ref(), info);
        if attributes.len() > 2 {
            out.push(',');
            out.push_str(&attributes[1..attributes.len() - 1]);
        }
        out.push('}');
        Ok(out)
    }

    /// `GET /apps/{id}/channels/{channel}/users`: a presence channel's user ids.
    fn users(&self, app: u16, wire: &str) -> Result<String, RestError> {
        crate::pusher::channel::validate(wire).map_err(|e| RestError::new(400, e))?;
        if ChannelKind::of(wire) != ChannelKind::Presence {
            return Err(RestError::new(
                400,
                "users are listed for presence channels only",
            ));
        }
        let mut out = String::from(r#"{"users":["#);
        for (index, user) in self.engine.pusher_users(app, wire).iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(r#"{"id":"#);
            push_json_str(&mut out, user);
            out.push('}');
        }
        out.push_str("]}");
        Ok(out)
    }
}

/// The call a method and a path (after `/apps/{id}/`) name.
fn route<'a>(method: &str, path: &'a str) -> Option<Call<'a>> {
    let parts: Vec<&str> = path.split('/').collect();
    Some(match (method, parts.as_slice()) {
        ("POST", ["events"]) => Call::Events,
        ("POST", ["batch_events"]) => Call::BatchEvents,
        ("GET", ["channels"]) => Call::Channels,
        ("GET", ["channels", channel]) => Call::Channel(channel),
        ("GET", ["channels", channel, "users"]) => Call::Users(channel),
        ("POST", ["users", user, "terminate_connections"]) => Call::Terminate(user),
        _ => return None,
    })
}

/// A channel or user id from the path, percent-decoded.
fn decoded(part: &str) -> Result<String, RestError> {
    crate::http::percent::decode_path(part).map_err(|e| RestError::new(400, e.to_string()))
}

/// True when the comma-separated `info` names `attribute`.
fn wants(info: &str, attribute: &str) -> bool {
    info.split(',').any(|item| item.trim() == attribute)
}

/// `{"user_count":N,"subscription_count":N}` as far as `info` asks (user counts for
/// presence channels only).
fn attributes(wire: &str, channel: Option<&PusherChannel>, info: &str) -> String {
    let mut fields = Vec::new();
    if wants(info, "user_count") && ChannelKind::of(wire) == ChannelKind::Presence {
        fields.push(format!(
            r#""user_count":{}"#,
            channel.map_or(0, |c| c.users)
        ));
    }
    if wants(info, "subscription_count") {
        fields.push(format!(
            r#""subscription_count":{}"#,
            channel.map_or(0, |c| c.subscriptions)
        ));
    }
    format!("{{{}}}", fields.join(","))
}

//! Conformance mode (`--echo`, for the Autobahn suite) as a dialect: the upgrade is checked
//! like any other (origin, tokens), but the connection joins and watches nothing, gets no
//! welcome, and every data frame it sends comes back unchanged. Decoding is
//! [`super::Decoded::Echo`] and encoding carries nothing.

use crate::http::upgrade::{self, Access};
use crate::http::{Request, Response, Upgrade};

/// Validates the upgrade like v1, then drops its subscriptions: an echo connection is in
/// no channel.
pub fn upgrade(request: &Request, access: Access<'_>) -> Result<Upgrade, Response> {
    let mut upgrade = upgrade::validate(request, access)?;
    upgrade.channels.clear();
    upgrade.watch.clear();
    Ok(upgrade)
}

//! Fuzzes the HTTP request path: `rollcall::http::examine` with any bytes and a body cap,
//! then, for a complete request, `route` and `upgrade::validate` with the default access and
//! with an admin token and allowed origins.
//!
//! Input: one selector byte for the body cap, then the bytes received. Checked besides
//! "never panics": a request is bounded (head by `MAX_HEAD`, body by the cap, never more
//! than was received), refusals are 4xx with a well-formed response, an accepted upgrade
//! has valid names and an accept key, and watching with a token configured needs it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::http::upgrade::{validate, Access, Upgrade};
use rollcall::http::{examine, route, Examined, Response, Route, MAX_HEAD};
use rollcall::names;

const TOKEN: &str = "s3cret";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, buffer)) = data.split_first() else {
        return;
    };
    let max_body = match selector % 4 {
        0 => usize::from(selector / 4),
        1 => 64 << 10,
        2 => 1,
        _ => usize::MAX,
    };
    let examined = examine(buffer, max_body);
    assert_eq!(
        examined,
        examine(buffer, max_body),
        "examine is deterministic"
    );
    let request = match examined {
        Examined::Partial => {
            assert!(
                buffer.len() < MAX_HEAD.saturating_add(max_body),
                "a buffer of {} bytes is still partial",
                buffer.len()
            );
            return;
        }
        Examined::Refuse(response) => {
            check_response(&response);
            assert!((400..500).contains(&response.status), "{}", response.status);
            return;
        }
        Examined::Complete(request) => request,
    };
    assert!(request.len <= buffer.len(), "request longer than the input");
    assert_eq!(request.body.len(), request.content_length.unwrap_or(0));
    assert!(request.body.len() <= max_body, "body over the cap");
    assert!(
        request.len - request.body.len() <= MAX_HEAD,
        "head over MAX_HEAD"
    );
    assert_eq!(
        &buffer[request.len - request.body.len()..request.len],
        &request.body[..]
    );
    // Re-examining exactly the request's bytes gives the same request.
    assert_eq!(
        examine(&buffer[..request.len], max_body),
        Examined::Complete(request.clone())
    );

    let routed = route(&request);
    match &routed {
        Ok(Route::PresenceChannel { channel, .. }) => {
            assert_eq!(names::validate_channel(channel), Ok(()));
        }
        Ok(_) => {}
        Err(response) => {
            check_response(response);
            assert!(response.is_refusal());
        }
    }
    let open = validate(&request, Access::default());
    check_upgrade(&open, true);
    let origins = ["http://good.example".to_owned(), "null".to_owned()];
    let guarded = validate(
        &request,
        Access {
            allowed_origins: &origins,
            admin_token: Some(TOKEN),
            ..Access::default()
        },
    );
    check_upgrade(&guarded, false);
    if let Ok(upgrade) = &guarded {
        let open = open
            .as_ref()
            .expect("what passes the guard passes without it");
        assert_eq!(upgrade.user, open.user);
        assert_eq!(upgrade.channels, open.channels);
        assert_eq!(upgrade.watch, open.watch);
        if let Some(origin) = request.header("Origin").map(str::trim) {
            // Listed, or the server's own page (an Origin naming the request's Host).
            let host = request.header("Host").map(str::trim).unwrap_or_default();
            let own = !host.is_empty()
                && ["http://", "https://"]
                    .iter()
                    .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
            assert!(own || origins.iter().any(|o| o.eq_ignore_ascii_case(origin)));
        }
    }
});

fn check_upgrade(result: &Result<Upgrade, Response>, open: bool) {
    let upgrade = match result {
        Ok(upgrade) => upgrade,
        Err(response) => {
            check_response(response);
            assert!(response.is_refusal());
            return;
        }
    };
    if let Some(user) = &upgrade.user {
        assert_eq!(names::validate_user(user), Ok(()));
    }
    for channel in &upgrade.channels {
        assert_eq!(names::validate_channel(channel), Ok(()));
    }
    for channel in upgrade.watch.iter().filter(|c| *c != "*") {
        assert_eq!(names::validate_channel(channel), Ok(()));
    }
    assert!(
        open || upgrade.admin || upgrade.watch.is_empty(),
        "watching without the token"
    );
    assert!(
        !open || !upgrade.admin,
        "no admin token configured: nobody presents it"
    );
    assert_eq!(upgrade.accept_key.len(), 28, "base64 of a SHA-1");
    let head = upgrade.response();
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    assert!(head.ends_with(b"\r\n\r\n"));
}

fn check_response(response: &Response) {
    assert!((100..600).contains(&response.status));
    let bytes = response.to_bytes();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(&bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        other => panic!("our own response does not parse: {other:?}"),
    };
    assert_eq!(parsed.code, Some(response.status));
    assert_eq!(bytes.len() - head, response.body.len());
}

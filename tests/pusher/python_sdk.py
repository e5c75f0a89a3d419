"""pusher-http-python 3.3 (PyPI `pusher`, unmodified) against rollcall's Pusher REST API
(driven by tests/pusher.rs, which holds a presence member `ann` in presence-room).

    python tests/pusher/python_sdk.py PORT SOCKET_ID

Calls trigger, channels_info, channel_info, users_info (GET requests, which this SDK signs
with the MD5 of the empty body) and authenticate (for SOCKET_ID), and a trigger with a wrong
secret; prints one JSON object of what each returned.
"""

import json
import sys

import pusher
from pusher.errors import PusherBadAuth

APP_ID, KEY, SECRET = "4321", "rollcall-key", "rollcall-secret"


def client(port, secret=SECRET):
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=secret, host="127.0.0.1", port=port, ssl=False)


def main():
    port, socket_id = int(sys.argv[1]), sys.argv[2]
    sdk = client(port)
    out = {
        "trigger": sdk.trigger(["presence-room"], "py.event", {"from": "python"}),
        "channels_info": sdk.channels_info(prefix_filter="presence-", attributes=["user_count"]),
        "channel_info": sdk.channel_info("presence-room", ["user_count", "subscription_count"]),
        "users_info": sdk.users_info("presence-room"),
        "authenticate": sdk.authenticate("presence-room", socket_id, {"user_id": "py", "user_info": {"lang": "python"}}),
    }
    try:
        client(port, secret="wrong").trigger(["presence-room"], "py.event", {})
        out["wrong_secret"] = "accepted"
    except PusherBadAuth as error:
        out["wrong_secret"] = "refused: %s" % error
    print(json.dumps(out))


if __name__ == "__main__":
    main()

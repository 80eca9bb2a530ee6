"""A third-party ServerPilot client (rwsp 1.0.1, from PyPI) driving `berth dev`.

Run by tests/dev.rs inside the test machine:
    python3 tests/rwsp_client.py URL CLIENT_ID API_KEY CERT_FILE KEY_FILE
It walks ServerPilot's documented flows with the client's own methods, asserts what
the client returns, and prints one JSON line of what it saw. Any failure raises.
"""

import json
import sys
import time

from serverpilot.serverpilot import ServerPilot

url, client_id, api_key, cert_file, key_file = sys.argv[1:6]
sp = ServerPilot(client_id, api_key)
sp.BaseUrl = url  # the client's documented way to point it elsewhere
seen = {}


def settle(answer):
    """Polls the answer's action until it is no longer open; it must succeed."""
    action = answer["actionid"]
    for _ in range(900):
        status = sp.check_action(action)["data"]
        if status["status"] != "open":
            assert status["status"] == "success", status
            return status
        time.sleep(0.1)
    raise AssertionError("action %s still open" % action)


servers = sp.list_servers()["data"]
assert len(servers) == 1, servers
server = servers[0]
for field in ("id", "name", "plan", "datecreated", "available_runtimes", "firewall", "autoupdates"):
    assert field in server, (field, server)
assert "php8.2" in server["available_runtimes"], server
seen["server"] = server["id"]

user = sp.create_user(server["id"], {"name": "derek", "password": "hunter2-is-long-enough"})
settle(user)
user = user["data"]
assert user["name"] == "derek" and "password" not in user, user
assert sp.get_user(user["id"])["data"]["name"] == "derek"

# ServerPilot's own example: a name and its www. twin, both listed.
app = sp.create_app({"name": "myblog", "sysuserid": user["id"], "runtime": "php8.2",
                     "domains": ["www.myblog.test", "myblog.test"]})
settle(app)
app = app["data"]
assert app["domains"] == ["www.myblog.test", "myblog.test"], app
assert sp.get_app(app["id"])["data"]["runtime"] == "php8.2"
assert [a["name"] for a in sp.list_apps()["data"]] == ["myblog"]

# A runtime the server lacks: the client raises on the 400.
try:
    sp.update_app(app["id"], {"runtime": "php5.6"})
    raise AssertionError("php5.6 was accepted")
except Exception as e:  # rwsp raises a bare Exception with the status
    assert str(e).startswith("400"), e

cert, key = open(cert_file).read(), open(key_file).read()
ssl = sp.enable_ssl(app["id"], {"key": key, "cert": cert})
settle(ssl)
assert ssl["data"]["key"] is None and ssl["data"]["cert"] == cert and ssl["data"]["auto"] is False, ssl
forced = sp.force_ssl(app["id"])
settle(forced)
assert forced["data"]["force"] is True, forced
assert sp.get_app(app["id"])["data"]["ssl"]["force"] is True
off = sp.disable_ssl(app["id"])
settle(off)
assert off["data"] == {}, off
assert sp.get_app(app["id"])["data"]["ssl"] is None

db = sp.create_database({"appid": app["id"], "name": "blogdb",
                         "user": {"name": "bloguser", "password": "db-password-long-enough"}})
settle(db)
db = db["data"]
assert db["user"]["name"] == "bloguser" and "password" not in db["user"], db
settle(sp.update_database(db["id"], {"user": {"id": db["user"]["id"], "password": "another-long-password"}}))
assert [d["name"] for d in sp.list_databases()["data"]] == ["blogdb"]
settle(sp.delete_database(db["id"]))
assert sp.list_databases()["data"] == []

settle(sp.delete_app(app["id"]))
settle(sp.delete_user(user["id"]))
assert sp.list_apps()["data"] == []
seen.update(app=app["id"], user=user["id"], db=db["id"], ok=True)
print(json.dumps(seen))

#!/usr/bin/env python3
"""hvac 2.4.0 against a Leash broker: the calls a Python workload makes.

Driven by tests/tests/compat.rs. Environment: VAULT_ADDR (the broker),
COMPAT_JWT (a JWT for COMPAT_ROLE from the broker's dev issuer),
COMPAT_ROLE, COMPAT_PATH (a KV v2 path inside the role's scope, under
mount `secret`), HOME (an empty temporary directory).

Prints one JSON object per line and never stops at the first problem:
{"step": NAME, "ok": true, "value": <what hvac returned>} or
{"step": NAME, "ok": false, "error": <exception class>, "errors": [...],
 "message": str}. A requests.Response (hvac's answer to anything but a
200 with JSON) is reported as {"status": N, "body": <JSON or text>}.
The Rust side asserts on the values.
"""

import json
import os
import sys
import warnings

import hvac
import requests

warnings.simplefilter("ignore")  # hvac's raise_on_deleted_version DeprecationWarning

ADDR = os.environ["VAULT_ADDR"]
JWT = os.environ["COMPAT_JWT"]
ROLE = os.environ["COMPAT_ROLE"]
PATH = os.environ["COMPAT_PATH"]  # e.g. compat/hvac


def plain(v):
    if isinstance(v, requests.Response):
        try:
            body = v.json()
        except ValueError:
            body = v.text
        return {"status": v.status_code, "body": body}
    return v


def emit(obj):
    print(json.dumps(obj, default=str), flush=True)


def step(name, fn):
    try:
        v = plain(fn())
        emit({"step": name, "ok": True, "value": v})
        return v
    except hvac.exceptions.VaultError as e:
        emit(
            {
                "step": name,
                "ok": False,
                "error": type(e).__name__,
                "errors": e.errors,
                "message": str(e.args[0]) if e.args else "",
                "json": e.json,
            }
        )
    except Exception as e:  # noqa: BLE001 - report anything, keep going
        emit({"step": name, "ok": False, "error": type(e).__name__, "message": str(e)})
    return None


c = hvac.Client(url=ADDR)
emit({"step": "ambient_token", "ok": True, "value": c.token})
step("is_authenticated_before_login", c.is_authenticated)

# Login failures are 400 (InvalidRequest), never 401/403.
step("login_bad_jwt", lambda: c.auth.jwt.jwt_login(role=ROLE, jwt="not-a-jwt"))
step("login_unknown_role", lambda: c.auth.jwt.jwt_login(role="no-such-role", jwt=JWT))

login = step("jwt_login", lambda: c.auth.jwt.jwt_login(role=ROLE, jwt=JWT))
step("token_set_by_login", lambda: bool(c.token) and c.token == (login or {}).get("auth", {}).get("client_token"))
step("is_authenticated", c.is_authenticated)

kv = c.secrets.kv.v2

# Writes: version metadata; CAS.
step("write_v1", lambda: kv.create_or_update_secret(path=PATH, secret={"user": "u", "pass": "p1"}))
step("write_v2_cas", lambda: kv.create_or_update_secret(path=PATH, secret={"user": "u", "pass": "p2"}, cas=1))
step("write_cas_mismatch", lambda: kv.create_or_update_secret(path=PATH, secret={"user": "x"}, cas=1))

# Reads: latest (with a lease), a version, a missing one.
step("read_latest", lambda: kv.read_secret_version(path=PATH, raise_on_deleted_version=True))
step("read_version_1", lambda: kv.read_secret_version(path=PATH, version=1, raise_on_deleted_version=True))
step("read_version_99", lambda: kv.read_secret_version(path=PATH, version=99, raise_on_deleted_version=True))
step("read_missing", lambda: kv.read_secret_version(path=PATH + "-nope", raise_on_deleted_version=True))
seeded = step("read_seeded", lambda: kv.read_secret_version(path="payments/db", raise_on_deleted_version=True))

parent = PATH.rsplit("/", 1)[0]
step("list", lambda: kv.list_secrets(path=parent))
step("list_payments", lambda: kv.list_secrets(path="payments"))
step("metadata", lambda: kv.read_secret_metadata(path=PATH))

# patch = GET + POST with cas (hvac does not send HTTP PATCH).
step("patch", lambda: kv.patch(path=PATH, secret={"pass": "p3"}))
step("read_after_patch", lambda: kv.read_secret_version(path=PATH, raise_on_deleted_version=True))

# Leases (from the read of a seeded secret, so they do not depend on writes).
lease_id = (seeded or {}).get("lease_id", "")
emit({"step": "lease_id", "ok": True, "value": lease_id})
step("lease_lookup", lambda: c.sys.read_lease(lease_id=lease_id))
step("lease_renew_60", lambda: c.sys.renew_lease(lease_id=lease_id, increment=60))
step("lease_renew_capped", lambda: c.sys.renew_lease(lease_id=lease_id, increment=100000))
step("lease_revoke", lambda: c.sys.revoke_lease(lease_id=lease_id))
step("lease_lookup_after_revoke", lambda: c.sys.read_lease(lease_id=lease_id))
step("lease_renew_after_revoke", lambda: c.sys.renew_lease(lease_id=lease_id, increment=60))

# Soft delete of the latest version, then the deleted-version envelope.
step("delete_latest", lambda: kv.delete_latest_version_of_secret(path=PATH))
step("read_deleted_raises", lambda: kv.read_secret_version(path=PATH, raise_on_deleted_version=True))
step("read_deleted", lambda: kv.read_secret_version(path=PATH, raise_on_deleted_version=False))
step("read_deleted_version_2", lambda: kv.read_secret_version(path=PATH, version=2, raise_on_deleted_version=True))

# Refusals: same answer for an existing and a missing path outside the scope.
step("refusal_existing", lambda: kv.read_secret_version(path="payments/admin/root", raise_on_deleted_version=True))
step("refusal_missing", lambda: kv.read_secret_version(path="payments/admin/nope", raise_on_deleted_version=True))
step("refusal_other_tree", lambda: kv.read_secret_version(path="reporting/warehouse", raise_on_deleted_version=True))
step("refusal_write", lambda: kv.create_or_update_secret(path="payments/db", secret={"x": "y"}))
step("refusal_list", lambda: kv.list_secrets(path="payments/admin"))

# Token.
step("lookup_self", c.auth.token.lookup_self)
step("renew_self_30m", lambda: c.auth.token.renew_self(increment="30m"))
step("renew_self_default", c.auth.token.renew_self)
step("renew_self_capped", lambda: c.auth.token.renew_self(increment="100h"))
# Response wrapping is not supported: an error, not an unwrapped answer.
step("renew_self_wrapped", lambda: c.auth.token.renew_self(wrap_ttl="5m"))

# Kubernetes auth path: the same JWT, validated the same way.
k = hvac.Client(url=ADDR)
step("kubernetes_login", lambda: k.auth.kubernetes.login(role=ROLE, jwt=JWT))
step("kubernetes_read", lambda: k.secrets.kv.v2.read_secret_version(path="payments/db", raise_on_deleted_version=True))
step("kubernetes_login_bad_jwt", lambda: hvac.Client(url=ADDR).auth.kubernetes.login(role=ROLE, jwt="x.y.z"))

# sys endpoints (no token needed).
anon = hvac.Client(url=ADDR)
step("health_get", lambda: anon.sys.read_health_status(method="GET"))
step("health_head", lambda: anon.sys.read_health_status())
step("health_activecode", lambda: anon.sys.read_health_status(method="GET", active_code=299))
step("health_standbycode", lambda: anon.sys.read_health_status(method="GET", standby_code=299))
step("is_sealed", anon.sys.is_sealed)
step("is_initialized", anon.sys.is_initialized)
step("seal_status", anon.sys.read_seal_status)
step("leader", anon.sys.read_leader_status)

# Revoke self: 204, then the token is dead.
step("revoke_self", c.auth.token.revoke_self)
step("is_authenticated_after_revoke", c.is_authenticated)
step("read_after_revoke", lambda: kv.read_secret_version(path="payments/db", raise_on_deleted_version=True))
step("lookup_self_after_revoke", c.auth.token.lookup_self)

emit({"step": "done", "ok": True, "value": True})
sys.exit(0)

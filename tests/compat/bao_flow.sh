#!/usr/bin/env bash
# The bao CLI (OpenBao 2.7.2, which behaves like the vault CLI and uses the
# same Go api package) against a Leash broker.
#
# Driven by tests/tests/compat.rs. Environment: BAO (the bao binary, in the
# .tools venv, whose python formats the output), BAO_ADDR (the broker),
# COMPAT_JWT (a JWT for COMPAT_ROLE), COMPAT_ROLE, COMPAT_PATH (a KV v2 path
# inside the scope, e.g. compat/app), COMPAT_NONE_JWT / COMPAT_NONE_ROLE (a
# workload with no scope at all), HOME (an empty temporary directory, so no
# ~/.vault-token is read or written).
#
# Prints one JSON object per command and never stops at the first failure:
#   {"step": NAME, "rc": EXIT_CODE, "out": <stdout, parsed if JSON>, "err": STDERR}
# The Rust side asserts on them.
#
# Note: `bao login -method=jwt` does not exist (the CLI has no jwt login
# handler: "Unknown auth method: jwt"); JWT login is `bao write auth/jwt/login`.
set -u

: "${BAO:?}" "${BAO_ADDR:?}" "${COMPAT_JWT:?}" "${COMPAT_ROLE:?}" "${COMPAT_PATH:?}"
PY="$(dirname "$BAO")/python"
SECRET="secret/$COMPAT_PATH"
PARENT="${SECRET%/*}"
unset VAULT_TOKEN BAO_TOKEN VAULT_ADDR
export BAO_ADDR
export BAO_FORMAT=table # each command says -format=json where it wants JSON

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# run STEP ARGS... : runs bao ARGS, prints the step's JSON line.
run() {
  local name="$1"
  shift
  "$BAO" "$@" >"$work/out" 2>"$work/err" </dev/null
  local rc=$?
  "$PY" - "$name" "$rc" "$work/out" "$work/err" <<'EOF'
import json, sys
name, rc, out_path, err_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = open(out_path, encoding="utf-8", errors="replace").read()
err = open(err_path, encoding="utf-8", errors="replace").read()
try:
    out = json.loads(out)
except ValueError:
    pass
print(json.dumps({"step": name, "rc": rc, "out": out, "err": err}), flush=True)
EOF
}

# field EXPR : evaluates a Python expression on the last step's parsed stdout `o`.
field() {
  "$PY" - "$1" "$work/out" <<'EOF'
import json, sys
try:
    o = json.load(open(sys.argv[2]))
    v = eval(sys.argv[1], {"o": o})
    print("" if v is None else v)
except Exception:
    print("")
EOF
}

# Documented CLI limitation: there is no jwt login handler.
run login_method_jwt login -method=jwt role="$COMPAT_ROLE" jwt="$COMPAT_JWT"

# Login failures are 400s with the reason.
run login_bad_jwt write -format=json auth/jwt/login role="$COMPAT_ROLE" jwt=not-a-jwt

run login write -format=json auth/jwt/login role="$COMPAT_ROLE" jwt="$COMPAT_JWT"
BAO_TOKEN="$(field 'o["auth"]["client_token"]')"
export BAO_TOKEN

# Writes (preflight → PUT data/), reads, versions.
run kv_put_1 kv put -format=json "$SECRET" user=u pass=p1
run kv_get kv get -format=json "$SECRET"
run kv_put_2 kv put -format=json "$SECRET" user=u pass=p2
run kv_get_version_1 kv get -format=json -version=1 "$SECRET"
run kv_put_cas_mismatch kv put -format=json -cas=1 "$SECRET" user=x
run kv_get_mount_flag kv get -format=json -mount=secret "$COMPAT_PATH"
run kv_get_missing kv get -format=json "$SECRET-nope"
run read_no_preflight read -format=json "secret/data/$COMPAT_PATH"
run kv_list kv list -format=json "$PARENT"
run list_generic list -format=json "secret/metadata/${PARENT#secret/}"
run kv_metadata_get kv metadata get -format=json "$SECRET"

# kv patch: HTTP PATCH (merge-patch) where `patch` is granted.
run kv_patch kv patch -format=json "$SECRET" pass=p3
run kv_get_after_patch kv get -format=json "$SECRET"

# Token.
run token_lookup token lookup -format=json
run token_renew token renew -format=json
run token_renew_30m token renew -format=json -increment=30m

# Leases (from a read of a seeded secret, so they do not depend on writes).
run seeded_kv_get kv get -format=json secret/payments/db
LEASE_ID="$(field 'o["lease_id"]')"
run lease_lookup lease lookup -format=json "$LEASE_ID"
run lease_renew lease renew -format=json "$LEASE_ID"
run lease_renew_10m lease renew -format=json -increment=10m "$LEASE_ID"
run lease_revoke lease revoke "$LEASE_ID"
run lease_lookup_after_revoke lease lookup -format=json "$LEASE_ID"

# Soft delete, then the deleted version's metadata (404 with the envelope).
run kv_delete kv delete "$SECRET"
run kv_get_deleted kv get -format=json "$SECRET"

# Refusals.
run refusal_kv_get kv get -format=json secret/payments/admin/root
run refusal_kv_get_missing kv get -format=json secret/payments/admin/nope
run refusal_kv_put kv put -format=json secret/payments/db x=y

# The preflight: a token with nothing under the mount gets a 403.
if [ -n "${COMPAT_NONE_JWT:-}" ]; then
  saved="$BAO_TOKEN"
  unset BAO_TOKEN
  run none_login write -format=json auth/jwt/login role="$COMPAT_NONE_ROLE" jwt="$COMPAT_NONE_JWT"
  BAO_TOKEN="$(field 'o["auth"]["client_token"]')" run none_kv_get kv get -format=json "$SECRET"
  BAO_TOKEN="$saved"
  export BAO_TOKEN
fi

# Server status (seal-status, leader).
run status status -format=json

# Revoke self, then everything is refused.
run token_revoke_self token revoke -self
run kv_get_after_revoke kv get -format=json "$SECRET"
run token_lookup_after_revoke token lookup -format=json

echo '{"step":"done","rc":0,"out":null,"err":""}'

#!/usr/bin/env node
// node-vault 0.12.0 against a Leash broker: the calls a Node.js workload makes.
//
// Driven by tests/tests/compat.rs. Environment: VAULT_ADDR (the broker),
// COMPAT_JWT (a JWT for COMPAT_ROLE), COMPAT_ROLE, COMPAT_PATH (a KV v2 path
// inside the role's scope, under mount `secret`), NODE_VAULT (the
// node-vault package directory), HOME (an empty temporary directory).
//
// Prints one JSON object per line and never stops at the first problem:
// {"step", "ok": true, "value"} or {"step", "ok": false, "message",
// "status", "body"} (node-vault rejects anything but 200/204 with errors[0],
// or "Status <code>" when errors is empty). The Rust side asserts on them.
'use strict';

const nodeVault = require(process.env.NODE_VAULT || 'node-vault');

const ADDR = process.env.VAULT_ADDR;
const JWT = process.env.COMPAT_JWT;
const ROLE = process.env.COMPAT_ROLE;
const PATH = process.env.COMPAT_PATH; // e.g. compat/node
const PARENT = PATH.slice(0, PATH.lastIndexOf('/'));

function emit(obj) {
    process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function step(name, fn) {
    try {
        const v = await fn();
        emit({ step: name, ok: true, value: v === undefined ? null : v });
        return v;
    } catch (e) {
        emit({
            step: name,
            ok: false,
            message: e && e.message,
            status: e && e.response ? e.response.statusCode : null,
            body: e && e.response ? e.response.body : null,
        });
        return null;
    }
}

async function main() {
    const vault = nodeVault({ endpoint: ADDR });
    const verbless = () => nodeVault({ endpoint: ADDR, token: vault.token, noCustomHTTPVerbs: true });

    emit({ step: 'ambient_token', ok: true, value: vault.token === undefined ? null : vault.token });

    const login = await step('jwt_login', () => vault.jwtLogin({ role: ROLE, jwt: JWT }));
    await step('token_set_by_login', async () => Boolean(login) && vault.token === login.auth.client_token);
    await step('jwt_login_bad', () => nodeVault({ endpoint: ADDR }).jwtLogin({ role: ROLE, jwt: 'not-a-jwt' }));

    // Writes: POST data/<p>; PATCH (merge-patch) with `update`.
    await step('write_v1', () => vault.write(`secret/data/${PATH}`, { data: { user: 'u', pass: 'p1' } }));
    await step('write_v2_cas', () =>
        vault.write(`secret/data/${PATH}`, { data: { user: 'u', pass: 'p2' }, options: { cas: 1 } }));
    await step('write_cas_mismatch', () =>
        vault.write(`secret/data/${PATH}`, { data: { user: 'x' }, options: { cas: 1 } }));
    await step('update_patch', () => vault.update(`secret/data/${PATH}`, { data: { pass: 'p3' }, options: {} }));

    // Reads: raw paths, the caller adds data/ and ?version=.
    await step('read_latest', () => vault.read(`secret/data/${PATH}`));
    await step('read_version_1', () => vault.read(`secret/data/${PATH}?version=1`));
    await step('read_missing', () => vault.read(`secret/data/${PATH}-nope`));
    const seeded = await step('read_seeded', () => vault.read('secret/data/payments/db'));

    // Listing: LIST, and GET ?list=1 with noCustomHTTPVerbs.
    await step('list', () => vault.list(`secret/metadata/${PARENT}`));
    await step('list_get', () => verbless().list(`secret/metadata/${PARENT}`));
    await step('list_payments_get', () => verbless().list('secret/metadata/payments'));
    await step('list_missing', () => vault.list(`secret/metadata/${PATH}-nope-dir`));

    // Refusals.
    await step('refusal_existing', () => vault.read('secret/data/payments/admin/root'));
    await step('refusal_missing', () => vault.read('secret/data/payments/admin/nope'));
    await step('refusal_write', () => vault.write('secret/data/payments/db', { data: { x: 'y' } }));

    // Token.
    await step('token_lookup_self', () => vault.tokenLookupSelf());
    await step('token_renew_self_30m', () => vault.tokenRenewSelf({ increment: '30m' }));
    // No argument: POST with no body (and a form content type).
    await step('token_renew_self_none', () => vault.tokenRenewSelf());

    // Leases (from the read of a seeded secret, so they do not depend on writes).
    const leaseId = seeded ? seeded.lease_id : '';
    emit({ step: 'lease_id', ok: true, value: leaseId });
    await step('lease_renew_60', () => vault.renew({ lease_id: leaseId, increment: 60 }));
    await step('lease_revoke', () => vault.revoke({ lease_id: leaseId }));
    await step('lease_renew_after_revoke', () => vault.renew({ lease_id: leaseId, increment: 60 }));

    // Legacy revoke-prefix (PUT /v1/sys/revoke-prefix/<p>).
    const l1 = await step('read_for_prefix_1', () => vault.read('secret/data/payments/db'));
    const l2 = await step('read_for_prefix_2', () => vault.read('secret/data/payments/api-key'));
    await step('revoke_prefix', () => vault.revokePrefix({ path_prefix: 'secret/data/payments' }));
    await step('lease_renew_after_prefix_1', () =>
        vault.renew({ lease_id: l1 ? l1.lease_id : '', increment: 60 }));
    await step('lease_renew_after_prefix_2', () =>
        vault.renew({ lease_id: l2 ? l2.lease_id : '', increment: 60 }));

    // sys endpoints.
    const anon = nodeVault({ endpoint: ADDR });
    await step('health', () => anon.health());
    await step('health_activecode', () => anon.health({ activecode: 299 }));
    await step('status', () => anon.status());
    await step('initialized', () => anon.initialized());

    // kubernetesLogin: without mount_point node-vault renders /v1/auth//login
    // (its template reads kubernetesPath from the call arguments, where it is
    // undefined). That must fail and must not yield a token; passing
    // mount_point: 'kubernetes' works.
    const k8sBuggy = nodeVault({ endpoint: ADDR });
    await step('kubernetes_login_no_mount', () => k8sBuggy.kubernetesLogin({ role: ROLE, jwt: JWT }));
    emit({ step: 'kubernetes_login_no_mount_token', ok: true, value: k8sBuggy.token === undefined ? null : k8sBuggy.token });
    const k8s = nodeVault({ endpoint: ADDR });
    await step('kubernetes_login', () => k8s.kubernetesLogin({ role: ROLE, jwt: JWT, mount_point: 'kubernetes' }));
    await step('kubernetes_read', () => k8s.read('secret/data/payments/db'));

    // Revoke self: 204 resolves; then the token is refused.
    await step('token_revoke_self', () => vault.tokenRevokeSelf());
    await step('read_after_revoke', () => vault.read('secret/data/payments/db'));
    await step('token_lookup_self_after_revoke', () => vault.tokenLookupSelf());

    emit({ step: 'done', ok: true, value: true });
}

main().catch((e) => {
    emit({ step: 'crash', ok: false, message: String(e && e.stack) });
    process.exit(1);
});

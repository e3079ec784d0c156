// `user:` and `group:` (issue 14, least privilege): looked up on this host at load, so
// `check` names an unknown account; root and a lone `group:` are refused.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';

const LISTENERS = 'listeners:\n  - name: a\n    bind: "127.0.0.1:0"\nevents: { sqlite: null }\n';

function load(head: string) {
  return loadConfigText(`${head}\n${LISTENERS}`, { env: {}, fileName: 't' });
}

function errors(head: string): string[] {
  const r = load(head);
  assert.ok(!r.ok, 'rejected');
  return r.errors;
}

// Debian's nobody (65534) and nogroup; the tests that name them skip elsewhere.
const nobody =
  /^nobody:[^:]*:65534:65534:/m.test(readFileSync('/etc/passwd', 'utf8')) &&
  /^nogroup:[^:]*:65534:/m.test(readFileSync('/etc/group', 'utf8'));
const skip = nobody ? false : 'needs nobody (65534) and nogroup, as Debian has them';

test('no user: runs as it was started', () => {
  const r = load('');
  assert.ok(r.ok);
  assert.equal(r.config.user, null);
});

test('user: by name, group defaulting to its primary group', { skip }, () => {
  const r = load('user: nobody');
  assert.ok(r.ok, !r.ok ? r.errors.join('\n') : '');
  assert.deepEqual(r.config.user, { user: 'nobody', uid: 65534, group: 'nogroup', gid: 65534 });
});

test('user: and group: by number', { skip }, () => {
  const r = load('user: 65534\ngroup: 65534');
  assert.ok(r.ok, !r.ok ? r.errors.join('\n') : '');
  assert.deepEqual(r.config.user, { user: 'nobody', uid: 65534, group: 'nogroup', gid: 65534 });
});

test('an unknown user or group is a clear error at its line', () => {
  assert.deepEqual(errors('user: h4-no-such-user'), [
    't:1: user: no user "h4-no-such-user" on this host (getent passwd h4-no-such-user finds none)',
  ]);
  assert.match(
    errors('user: nobody\ngroup: h4-no-such-group').join('\n'),
    /^t:2: group: no group "h4-no-such-group"/,
  );
});

test('root, a lone group: and a malformed name are refused', () => {
  assert.match(errors('user: root').join('\n'), /user root is root \(uid 0\): it would drop nothing/);
  assert.match(errors('user: 0').join('\n'), /uid 0/);
  assert.match(errors('group: nogroup').join('\n'), /group: needs user:/);
  assert.match(errors('user: "a b"').join('\n'), /expected a user or group name, or a numeric id/);
});

test('a numeric user without a passwd entry needs group:', () => {
  assert.match(errors('user: 4000000').join('\n'), /no passwd entry, so no primary group: set group:/);
  const r = load('user: 4000000\ngroup: 4000001');
  assert.ok(r.ok, !r.ok ? r.errors.join('\n') : '');
  assert.deepEqual(r.config.user, { user: '4000000', uid: 4000000, group: '4000001', gid: 4000001 });
});

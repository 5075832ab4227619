import { describe, expect, it } from 'vitest';
import { applyDlp, compileCatalog } from '../../../src/dlp/index.js';

const scanner = compileCatalog();
const rules = (text: string): string[] => scanner.scan(text).map((f) => f.rule);
const hex = (n: number): string => 'a1b2c3d4e5f60718'.repeat(8).slice(0, n);

describe('default actions', () => {
  it('redacts e-mail, phone numbers, internal hostnames and home paths', () => {
    const text = 'mail jane@example.org, call +44 20 7946 0958 or (415) 555-2671, host db01.prod.corp, dir /home/jane/src/app';
    expect(applyDlp(scanner, text).text).toBe(
      'mail [REDACTED:pii.email], call [REDACTED:pii.phone_e164] or [REDACTED:pii.phone_nanp], host [REDACTED:pii.internal_hostname], dir [REDACTED:pii.unix_home_path]',
    );
  });

  it('still only flags IP and MAC addresses', () => {
    const text = 'from 10.0.0.1 via 00:1a:2b:3c:4d:5e';
    expect(applyDlp(scanner, text).text).toBe(text);
    expect(rules(text)).toEqual(['pii.ipv4', 'pii.mac_address']);
  });

  it('an override can bring back the old flag-only behaviour', () => {
    const s = compileCatalog({ overrides: { 'pii.email': { action: 'flag' } } });
    expect(applyDlp(s, 'a bob@example.com').text).toBe('a bob@example.com');
  });
});

describe('connection strings with credentials', () => {
  it.each([
    ['postgres://app:S3cretPw@db:5432/x', 'db.postgres_uri_password', 'S3cretPw'],
    ['mongodb+srv://u:p4ssw0rd@c0.mongodb.net/db', 'db.mongodb_uri_password', 'p4ssw0rd'],
    ['redis://:hunter2pw@cache:6379/0', 'db.redis_uri_password', 'hunter2pw'],
    ['amqps://guest:Gu3stPw@mq:5671', 'broker.amqp_uri_password', 'Gu3stPw'],
    ['jdbc:sqlserver://h:1433;databaseName=x;user=sa;password=Secr3tPw;', 'db.jdbc_password', 'Secr3tPw'],
    ['Server=db;Database=x;User Id=sa;Password=Secr3tPw;', 'db.connection_string_password', 'Secr3tPw'],
    ['svn+ssh://deploy:Dep1oyPw@svn.example.org/repo', 'net.uri_password', 'Dep1oyPw'],
  ])('%s', (text, rule, secret) => {
    const r = applyDlp(scanner, text);
    expect(r.findings.map((f) => f.rule)).toContain(rule);
    expect(r.text).not.toContain(secret);
  });

  it('Azure storage and Service Bus connection strings', () => {
    const storage = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${'Zx8Qw2Lm'.repeat(10)}Zx8Qw2==;EndpointSuffix=core.windows.net`;
    const bus = `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=${'Qw2LmZx8'.repeat(5)}Qw2=`;
    expect(rules(storage)).toEqual(['azure.storage_account_key']);
    expect(rules(bus)).toContain('azure.shared_access_key');
  });

  it('the password of a URI is the credential rule\'s, not an e-mail address; mailto: still is one', () => {
    expect(rules('mongodb://u:pw9x@c0.example.net')).toEqual(['db.mongodb_uri_password']);
    expect(rules('<a href="mailto:bob@example.org">')).toEqual(['pii.email']);
  });
});

describe('sensitive file paths', () => {
  it.each([
    'cat /etc/shadow',
    'see /etc/ssh/ssh_host_ed25519_key',
    'read ~/.aws/credentials',
    '"/home/alice/.ssh/id_ed25519"',
    'KUBECONFIG=/root/.kube/config',
    '$HOME/.netrc',
    '/Users/bob/.docker/config.json',
  ])('redacts %s', (text) => {
    expect(rules(text)).toEqual(['path.sensitive_file']);
  });

  it('does not fire inside URLs or on ordinary paths', () => {
    for (const text of ['https://example.com/etc/shadow', 'https://h.io/home/alice/.ssh/id_rsa', 'file:///etc/shadow', 'docs/etc/shadow.md', '/etc/passwd', '/etc/shadowsocks']) {
      expect(rules(text), text).toEqual([]);
    }
  });

  it('a bare /home/<segment> is a web route more often than a user directory', () => {
    expect(rules('<a href="/home/about">')).toEqual([]);
    expect(rules('cwd /home/alice/work')).toEqual(['pii.unix_home_path']);
  });
});

describe('context-free shapes', () => {
  it('Twilio API key SID needs no "twilio" nearby', () => {
    expect(rules(`key=SK${hex(32)}`)).toEqual(['twilio.api_key']);
  });

  it('but a bare 32-hex hash, or SK glued to a word, is not one', () => {
    expect(rules(`md5 ${hex(32)}`)).toEqual([]);
    expect(rules(`TASK${hex(32)}`)).toEqual([]);
    expect(rules(`SK${hex(33)}`)).toEqual([]);
  });
});

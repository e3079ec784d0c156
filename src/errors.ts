// The error table: every error honeygate raises on purpose has a stable code here, and
// docs/errors.md lists the same codes (a unit test keeps the two in sync). Attacker
// behaviour (bad PROXY headers, resets, floods) is not an error: it is an event's close reason.

export const ERRORS = {
  HG_ERR_CONFIG: 'invalid configuration',
  HG_ERR_CONFIG_READ: 'cannot read the configuration file',
  HG_ERR_LISTEN: 'cannot listen on an address',
  HG_ERR_UPSTREAM_CONNECT: 'cannot connect to a honeypot server',
  HG_ERR_SINK: 'an event sink failed to write',
  HG_ERR_EVENTS_QUERY: 'cannot query the event store',
  HG_ERR_ADMIN_AUTH: 'admin API: missing or wrong bearer token',
  HG_ERR_PKI: 'cannot create, read or use a certificate',
  HG_ERR_SOCKET: 'cannot set up a socket',
  HG_ERR_NATIVE: 'native addon not available',
  HG_ERR_NETNS: 'cannot build or tear down a network of namespaces',
  HG_ERR_DOCKER: 'Docker Engine in a namespace failed',
  HG_ERR_FIREWALL: 'cannot read or change the firewall',
  HG_ERR_WORKER: 'a worker process failed',
  HG_ERR_PRIVILEGES: 'cannot drop root privileges',
  HG_ERR_RECORD: 'session recording stopped or cut short',
  HG_ERR_TUNNEL: 'a sensor-hub tunnel failed',
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class HoneygateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ERRORS[code]}: ${detail}` : ERRORS[code], options);
    this.code = code;
    this.name = 'HoneygateError';
  }
}

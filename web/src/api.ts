// The page's only way to the server: the JSON API under /api/ (docs/dashboard.md), with the
// session cookie the login set. A 401 means the session ended: back to the login page.

export interface Ev {
  id: string;
  type: string;
  openedAt: number;
  closedAt: number | null;
  sensor: string;
  listener: string;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  peer: { ip: string; port: number } | null;
  proxyHeader: string | null;
  route: string | null;
  action: string | null;
  backend: string | null;
  server: string | null;
  sourceMode: string | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  closeReason: string | null;
  firstBytes: string; // base64
  firstBytesHex?: string;
  firstBytesText?: string;
  protocol: string | null;
  protocolFields: Record<string, unknown> | null;
  count: number;
  detail: string | null;
}

export class ApiError extends Error {}

export async function get<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  if (res.status === 401) {
    location.assign('/login');
    throw new ApiError('not logged in');
  }
  const body = (await res.json().catch(() => null)) as (T & { message?: string }) | null;
  if (!res.ok) throw new ApiError(body?.message ?? `${res.status} ${res.statusText}`);
  return body as T;
}

export interface Timeline {
  since: number;
  bucketMs: number;
  times: number[];
  series: { name: string; counts: number[] }[];
}
export interface Overview {
  flows: number;
  refused: number;
  sources: number;
  sourcesEstimated: boolean; // a HyperLogLog estimate (standard error 1.6%): shown as "~12,300"
  bytesIn: number;
  sensors: { sensor: string; flows: number; last: number }[];
  firewall: { at: number; detail: string | null; sensor: string }[];
}
export interface SourceRow {
  ip: string;
  flows: number;
  first: number;
  last: number;
  ports: number[];
  portCount: number;
  protocols: string[];
}
export interface Heatmap {
  since: number;
  slotMs: number;
  times: number[];
  ports: number[];
  counts: number[][];
  max: number;
}
export interface Refusals {
  byReason: { reason: string; flows: number }[];
  topSources: { ip: string; flows: number }[];
  limitEnds: { reason: string; flows: number }[];
}
export interface Backends {
  backends: { backend: string; servers: { server: string; up: boolean; active: number }[] }[];
  listeners: { listener: string; address: string }[];
  openFlows: number;
  refused: number;
  refusedBy: Record<string, number>;
  uptimeSeconds: number;
}

// What an action is to the configuration: the route key that picks it, the schema of its
// options, the typed value the data path receives, and the action in words. The code that
// carries an action out is elsewhere (src/actions/<type>.ts, looked up by type in
// src/actions/index.ts), so that `check` and the config loader never load the data path.
// A definition imports only src/config/zod.ts: schema.ts builds the route schema from the
// definitions, so a definition importing schema.ts (or types.ts) would close a cycle.
import type { z } from 'zod';
import { conv, describe } from '../../config/zod.js';

/** What describe() may ask about the rest of the config. */
export interface ExplainContext {
  /** A backend in words ("backend web (2 servers, ...)"), or null when it is not defined. */
  backend(name: string): string | null;
}

/** `A`: the action as the Config holds it (`{ type, ...options }`); `Raw`: its checked route value. */
export interface ActionDefinition<A extends { type: string }, Raw = unknown> {
  /** The route key that picks the action (`capture:`), and its `type` in the Config. */
  readonly type: A['type'];
  /** The key's value as written in a route; its defaults filled in, its problems reported at its path. */
  readonly schema: z.ZodType<Raw, unknown>;
  /** The checked value -> the action the data path runs. */
  assemble(raw: Raw): A;
  /** The action in words, for `check` and the dashboard: "reject (RST)". */
  describe(action: A, ctx: ExplainContext): string;
  /** Backends the action sends flows to: the config checks that each exists, and counts it as used. */
  backends?(action: A): string[];
}

/** Names a definition with its types inferred: `export const drop = defineAction({ ... })`. */
export function defineAction<A extends { type: string }, Raw>(
  d: ActionDefinition<A, Raw>,
): ActionDefinition<A, Raw> {
  return d;
}

/** `reject: {}`, `reject: true` and a bare `reject:`: the schema of an action that takes no options. */
export const noOptions = conv((v): Record<string, never> => {
  if (v === true || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0))
    return {};
  throw new Error(`takes no options (write {} or true), got ${describe(v)}`);
});

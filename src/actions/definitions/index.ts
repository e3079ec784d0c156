// Every action a route can take, as the configuration knows it. Adding an action: a
// definition here (one file, one line in DEFINITIONS) and its code in src/actions/ (one
// file, one line in src/actions/index.ts, which the compiler asks for). The config
// schema, assembly, the checks, `check`'s words and the event's `action` field all read
// this table.
import type { z } from 'zod';
import { type CaptureAction, capture } from './capture.js';
import { drop } from './drop.js';
import { forward } from './forward.js';
import { reject } from './reject.js';
import type { ActionDefinition, ExplainContext } from './types.js';

export { CAPTURE_DEFAULTS, type CaptureAction, type CaptureOptions } from './capture.js';
export type { ExplainContext } from './types.js';

// The order is the order messages list them in ("a rule needs exactly one of forward, ...").
const DEFINITIONS = [forward, capture, reject, drop] as const;

/** An action as the Config holds it: `{ type: 'forward', backend }`, `{ type: 'capture', capture }`, ... */
export type Action = ReturnType<(typeof DEFINITIONS)[number]['assemble']>;
export type ActionType = Action['type'];

/** The route keys that pick an action, in order. */
export const ACTION_KEYS: readonly ActionType[] = DEFINITIONS.map((d) => d.type);

// biome-ignore lint/suspicious/noExplicitAny: each definition's own A and Raw; looked up by type
type AnyDefinition = ActionDefinition<any, any>;
const BY_TYPE = new Map<string, AnyDefinition>(DEFINITIONS.map((d) => [d.type, d as AnyDefinition]));

function definition(type: string): AnyDefinition {
  const d = BY_TYPE.get(type);
  if (!d) throw new Error(`unknown action ${type}`); // only a type ACTION_KEYS listed gets here
  return d;
}

/** Each action's route key with the schema of its value, optional: spread into the route schema. */
export const ACTION_SHAPE = Object.fromEntries(DEFINITIONS.map((d) => [d.type, d.schema.optional()])) as {
  [K in ActionType]: z.ZodOptional<z.ZodType<unknown, unknown>>;
};

/** The action of a route whose key `type` held the checked value `raw`. */
export function assembleAction(type: ActionType, raw: unknown): Action {
  return definition(type).assemble(raw);
}

/** The action in words: "forward to backend web (...)", "reject (RST)". */
export function describeAction(action: Action, ctx: ExplainContext): string {
  return definition(action.type).describe(action, ctx);
}

/** The backends an action sends flows to (forward's one; none for capture, reject, drop). */
export function backendsOf(action: Action): string[] {
  return definition(action.type).backends?.(action) ?? [];
}

/** The same for a route value not assembled yet: [] when it does not parse (its own problem is reported). */
export function rawBackends(type: ActionType, raw: unknown): string[] {
  const d = definition(type);
  if (!d.backends) return [];
  const parsed = d.schema.safeParse(raw);
  return parsed.success ? d.backends(d.assemble(parsed.data)) : [];
}

/** The default rule's action when routes: is absent or empty: capture with its defaults. */
export const DEFAULT_CAPTURE: CaptureAction = capture.assemble(capture.schema.parse({}));

// Action implementations, looked up by type: the data path's half of an action, whose
// definition (config key, options, words) is in definitions/. Only the data path imports
// this table (gateway.ts), so `check` and the config loader never load the code below.
// The mapped type makes the compiler ask for a line here when a definition is added.

import type { Flow } from '../gateway/flow.js';
import { capture } from './capture.js';
import type { Action } from './definitions/index.js';
import { drop } from './drop.js';
import { forward } from './forward.js';
import { reject } from './reject.js';

type Run<T extends Action['type']> = (flow: Flow, action: Extract<Action, { type: T }>) => void;

const ACTIONS: { [T in Action['type']]: Run<T> } = {
  forward: (flow, a) => forward(flow, a.backend),
  capture: (flow, a) => capture(flow, a.capture),
  reject: (flow) => reject(flow),
  drop: (flow) => drop(flow),
};

export function runAction(flow: Flow, action: Action): void {
  return (ACTIONS[action.type] as Run<Action['type']>)(flow, action);
}

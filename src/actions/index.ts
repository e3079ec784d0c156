// Action implementations, looked up by type: adding an action is one file and one line here.
import type { Action } from '../config/types.js';
import type { Flow } from '../gateway/flow.js';
import { capture } from './capture.js';
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

// `reject: {}`: answer with a TCP reset, as a closed port would (src/actions/reject.ts).
import { defineAction, noOptions } from './types.js';

export type RejectAction = { type: 'reject' };

export const reject = defineAction({
  type: 'reject',
  schema: noOptions,
  assemble: (): RejectAction => ({ type: 'reject' }),
  describe: () => 'reject (RST)',
});

// `drop: {}`: close without a word, a FIN and nothing sent (src/actions/drop.ts).
import { defineAction, noOptions } from './types.js';

export type DropAction = { type: 'drop' };

export const drop = defineAction({
  type: 'drop',
  schema: noOptions,
  assemble: (): DropAction => ({ type: 'drop' }),
  describe: () => 'drop (close, send nothing)',
});

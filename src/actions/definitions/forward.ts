// `forward: BACKEND`: hand the flow to a server of the backend (src/actions/forward.ts).
import { conv, name } from '../../config/zod.js';
import { defineAction } from './types.js';

export type ForwardAction = { type: 'forward'; backend: string };

export const forward = defineAction({
  type: 'forward',
  schema: conv(name),
  assemble: (backend: string): ForwardAction => ({ type: 'forward', backend }),
  describe: (a, ctx) => {
    const words = ctx.backend(a.backend);
    return words === null ? `forward to backend ${a.backend} (not defined)` : `forward to ${words}`;
  },
  backends: (a) => [a.backend],
});

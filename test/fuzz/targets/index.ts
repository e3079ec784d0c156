// Every fuzz target, by name. Adding one: a module exporting a Target, and one line here.
import type { Target } from '../engine.js';
import { classifiers } from './classifiers.js';
import { config } from './config.js';
import { proxyProtocol } from './proxy-protocol.js';

export const TARGETS: readonly Target[] = [proxyProtocol, classifiers, config];

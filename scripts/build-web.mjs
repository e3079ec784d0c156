// Bundles the dashboard (web/) into dist/web/: app.js and app.css by esbuild, index.html and
// icon.svg copied. Part of `npm run build`; the package ships dist/web/, so an installed
// honeygate needs neither esbuild nor the internet to serve the page.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(root, 'web', 'src', 'main.tsx') },
  outdir: out,
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(join(root, 'web', 'index.html'), join(out, 'index.html'));
copyFileSync(join(root, 'web', 'icon.svg'), join(out, 'icon.svg'));
console.log(`dashboard bundled into ${out}`);

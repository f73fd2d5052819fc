// The longest functions in www/*.js, in source lines (first to last line of each function,
// nested functions counted inside their parent too). The web floor's bar: none over 150.
//   node tools/js_function_lengths.mjs [N]      (N longest, default 10)
// Uses the acorn parser (a devDependency in package.json, installed by ./build.sh setup).
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const acorn = require('acorn');
const walk = require('acorn-walk');

const dir = new URL('../www/', import.meta.url).pathname;
const rows = [];
for (const f of readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    const src = readFileSync(join(dir, f), 'utf8');
    const ast = acorn.parse(src, { ecmaVersion: 'latest', sourceType: 'module', locations: true });
    walk.full(ast, (node) => {
        if (!/Function/.test(node.type)) return;
        const lines = node.loc.end.line - node.loc.start.line + 1;
        const name = node.id?.name ?? '(anonymous)';
        rows.push({ file: f, line: node.loc.start.line, name, lines });
    });
}
rows.sort((a, b) => b.lines - a.lines);
const n = Number(process.argv[2] ?? 10);
for (const r of rows.slice(0, n)) console.log(`${String(r.lines).padStart(5)}  ${r.file}:${r.line}  ${r.name}`);

/**
 * `npm run bench` (every benchmark, writes `bench/RESULTS.md`), `npm run bench -- --quick`
 * (every benchmark briefly, for CI; writes nothing) and `npm run bench -- --only hit,memory`.
 *
 * The benchmarks run on the tsc output of the library and of `bench/`, like the `dist/` that
 * ships, not through tsx: tsx's transform keeps function names by wrapping every closure in
 * a `__name(...)` call, which slows the library's own code (closures made per call) and not
 * effect's precompiled code. They run in a child `node --expose-gc`, for the memory figures
 * and a full collection before every sample.
 */
import { spawnSync } from "node:child_process"
import { rmSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const outDir = path.join(root, "node_modules", ".cache", "effect-queue-manager-bench")
const args = process.argv.slice(2)

const node = (nodeArgs: ReadonlyArray<string>): number =>
  spawnSync(process.execPath, nodeArgs, { cwd: root, stdio: "inherit" }).status ?? 1

rmSync(outDir, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const compiled = node([tsc, "-p", path.join(root, "bench", "tsconfig.json")])
if (compiled !== 0) process.exit(compiled)
const inlined = node([path.join(root, "scripts", "inline-lua.mjs"), path.join(outDir, "src")])
if (inlined !== 0) process.exit(inlined)

const partial = args.includes("--quick") || args.includes("--only")
process.exit(
  node([
    "--expose-gc",
    "--max-old-space-size=8192",
    path.join(outDir, "bench", "main.js"),
    ...args,
    ...(partial ? [] : ["--write", path.join(root, "bench", "RESULTS.md")])
  ])
)

/**
 * The package as a user installs it: `npm pack` (whose `prepack` builds `dist/`), the tarball
 * unpacked into a project of its own next to the peers it needs, then used from an ES module
 * and from a CommonJS file with `require()`, in JavaScript and in TypeScript compiled to CommonJS.
 */
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)
const root = path.resolve(import.meta.dirname, "..")

/** A program that takes and releases a slot, refuses one over the limit, and prints what it saw. */
const program = (load: string) => `
${load}
const queue = Effect.runSync(QueueManager.make({ maxUserQueue: 1 }))
const outcome = Effect.runSync(
  queue.withSlot(7)(Effect.flatMap(queue.withSlot(7)(Effect.void), () => Effect.succeed("ran")).pipe(
    Effect.catchAll((error) => Effect.succeed(error instanceof QueueManager.QueueFull ? "refused: " + error.reason : "other"))
  ))
)
console.log(outcome, typeof RedisStore.layer)
`

describe("the published package", () => {
  it("packs dist, LICENSE and the sources, and works through import and require()", async () => {
    const project = await mkdtemp(path.join(tmpdir(), "eqm-package-"))
    try {
      const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", project], { cwd: root })
      const tarball = path.join(project, stdout.trim().split("\n").pop()!)
      const { stdout: listing } = await run("tar", ["-tzf", tarball])
      const files = listing.split("\n").filter((line) => line !== "")
      expect(files).toEqual(
        expect.arrayContaining([
          "package/LICENSE",
          "package/package.json",
          "package/dist/index.js",
          "package/dist/index.d.ts",
          "package/dist/RedisStore.js"
        ])
      )
      expect(files.filter((file) => file.startsWith("package/test/") || file.includes("node_modules"))).toEqual([])

      const installed = path.join(project, "node_modules", "effect-queue-manager")
      await mkdir(installed, { recursive: true })
      await run("tar", ["-xzf", tarball, "-C", installed, "--strip-components=1"])
      // the peers, as the user's project has them
      for (const peer of ["effect", "ioredis"]) {
        await symlink(path.join(root, "node_modules", peer), path.join(project, "node_modules", peer))
      }
      await writeFile(
        path.join(project, "esm.mjs"),
        program(`import { Effect } from "effect"
import { QueueManager } from "effect-queue-manager"
import * as RedisStore from "effect-queue-manager/RedisStore"`)
      )
      await writeFile(
        path.join(project, "cjs.cjs"),
        program(`const { Effect } = require("effect")
const { QueueManager } = require("effect-queue-manager")
const RedisStore = require("effect-queue-manager/RedisStore")`)
      )
      for (const file of ["esm.mjs", "cjs.cjs"]) {
        const { stdout: printed } = await run(process.execPath, [file], { cwd: project })
        expect(printed.trim(), file).toBe("refused: user function")
      }
      // TypeScript compiling to CommonJS: module node20 (or nodenext) models Node's require() of ES
      // modules, as does the older commonjs with node10 resolution; node16 and node18 refuse it
      await writeFile(
        path.join(project, "typed.cts"),
        `import { Effect } from "effect"
import { QueueManager } from "effect-queue-manager"
const queue: Effect.Effect<QueueManager.Service, unknown> = QueueManager.make({ maxUserQueue: 1 })
console.log(Effect.isEffect(queue))
`
      )
      const compile = (module: string, resolution: string) =>
        run(
          process.execPath,
          [
            path.join(root, "node_modules", "typescript", "bin", "tsc"),
            ...["--strict", "--skipLibCheck", "--target", "es2022", "--outDir", `out-${module}`],
            ...["--module", module, "--moduleResolution", resolution, "typed.cts"]
          ],
          { cwd: project }
        )
      for (const [module, resolution] of [
        ["node20", "node16"],
        ["nodenext", "nodenext"],
        ["commonjs", "node10"]
      ] as const) {
        await compile(module, resolution)
        const { stdout: printed } = await run(process.execPath, [`out-${module}/typed.cjs`], { cwd: project })
        expect(printed.trim(), `module ${module}`).toBe("true")
      }
      await expect(compile("node16", "node16")).rejects.toMatchObject({ stdout: expect.stringContaining("TS1479") })
      // the internals stay private
      await expect(
        run(process.execPath, ["-e", 'require("effect-queue-manager/internal/model.js")'], { cwd: project })
      ).rejects.toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/)
      expect((await readdir(installed)).sort()).toEqual(["LICENSE", "README.md", "dist", "package.json", "src"])
    } finally {
      await rm(project, { recursive: true, force: true })
    }
  }, 120_000)
})

import { Deferred, Effect } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"

export interface Example {
  readonly child: ChildProcess
  /** Everything the process wrote to stdout and stderr so far. */
  readonly output: () => string
  /** The first match of `pattern` in the output, waiting for it; fails if the process exits first. */
  readonly waitFor: (pattern: RegExp) => Effect.Effect<RegExpMatchArray, string>
  /** The exit code once the process has ended. */
  readonly exited: Effect.Effect<number | null>
}

/**
 * Runs `node --import tsx <script>` (what `npm run example:*` runs, without the `npx` in between,
 * so that signals reach the example itself) with `env` added to this process's environment; the process gets
 * SIGTERM when the scope closes, if it is still running.
 */
export const runExample = (script: string, env: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const exit = yield* Deferred.make<number | null>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, ["--import", "tsx", script], { env: { ...process.env, ...env } })),
      (child) =>
        Effect.zipRight(
          Effect.sync(() => child.exitCode === null && child.kill("SIGTERM")),
          Deferred.await(exit)
        )
    )
    let output = ""
    const changed = new Set<() => void>()
    const append = (data: Buffer) => {
      output += data.toString()
      changed.forEach((f) => f())
    }
    child.stdout?.on("data", append)
    child.stderr?.on("data", append)
    child.on("exit", (code) => {
      Deferred.unsafeDone(exit, Effect.succeed(code))
      changed.forEach((f) => f())
    })
    const waitFor = (pattern: RegExp) =>
      Effect.async<RegExpMatchArray, string>((resume) => {
        const check = () => {
          const match = output.match(pattern)
          if (match !== null) resume(Effect.succeed(match))
          else if (child.exitCode !== null)
            resume(Effect.fail(`${script} exited before printing ${pattern}:\n${output}`))
          else return
          changed.delete(check)
        }
        changed.add(check)
        check()
        return Effect.sync(() => changed.delete(check))
      })
    return { child, output: () => output, waitFor, exited: Deferred.await(exit) } satisfies Example
  })

/**
 * How the examples run as programs: a failure prints what went wrong, in words (a bad setting
 * names the variable, and the rule it breaks), not Effect's `FiberFailure` wrapper, and exits with code
 * 1; Ctrl+C and SIGTERM interrupt the program, so its finalizers (a drain, a server's close)
 * run before it exits.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, ConfigError, Console, Effect } from "effect"

// the setting's name, unless the message already says it
const named = (_: unknown, path: Array<string>, message: string) => {
  const name = path.join(".")
  return message.includes(name) ? message : `${name}: ${message}`
}

const describeConfigError = (error: ConfigError.ConfigError): string =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left, right) => `${left}\n${right}`,
    orCase: (_, left, right) => `${left}\n${right}`,
    invalidDataCase: named,
    missingDataCase: named,
    sourceUnavailableCase: named,
    unsupportedCase: named
  })

/** A defect (a bug) as Effect shows it, with its stack; its plain text if Effect cannot show it (a cause that loops). */
const describeDefect = (defect: unknown): string => {
  try {
    return Cause.pretty(Cause.die(defect))
  } catch {
    return defect instanceof Error ? (defect.stack ?? String(defect)) : String(defect)
  }
}

/** An error in words: its message; without one, its name and then its cause's (once each: a cause may loop). */
const describeError = (error: unknown, seen = new Set<unknown>()): string => {
  if (ConfigError.isConfigError(error)) return `bad configuration:\n${describeConfigError(error)}`
  if (!(error instanceof Error)) return typeof error === "string" ? error : describeDefect(error)
  if (error.message !== "") return error.message
  seen.add(error)
  const name = (error as { readonly _tag?: string })._tag ?? error.name
  // an error without a message (a server that could not listen): its name, then why
  return error.cause === undefined || seen.has(error.cause) ? name : `${name}: ${describeError(error.cause, seen)}`
}

/** What a failed program prints: each failure's message, then each defect (a bug) with its stack. */
export const describeFailure = (cause: Cause.Cause<unknown>): string =>
  [
    ...Array.from(Cause.failures(cause), (e) => describeError(e)),
    ...Array.from(Cause.defects(cause), describeDefect)
  ].join("\n")

/** Runs an example's program to its end (or Ctrl+C), printing a failure as `describeFailure` does. */
export const runMain = <A, E>(program: Effect.Effect<A, E>): void =>
  program.pipe(
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(describeFailure(cause))
    ),
    NodeRuntime.runMain({ disableErrorReporting: true })
  )

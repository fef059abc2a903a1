import { Effect } from "effect"
import { StoreUnavailable } from "../errors.js"
import { type Connection, isNoPermission, unavailable } from "./connection.js"
import { probeKeysOf } from "./lua.js"

/**
 * Fails unless the ACL user may run every command the store's calls run, on the prefix's keys:
 * one call at start (`probe` in `store.lua`) tries each, so that a missing permission is named
 * there, not met later by a call that then fails (Redis reports a command refused inside a
 * script by the script's line, not by the command's name).
 */
export const checkPermissions = (db: Connection, prefix: string): Effect.Effect<void, StoreUnavailable> =>
  Effect.flatMap(
    Effect.tryPromise({
      // refused before it runs (keys granted one by one or read-only, no FCALL): the calls that
      // follow meet the same refusal, in Redis's own words, or none (the state's keys granted)
      try: () =>
        db
          .run("probe", probeKeysOf(prefix), [])
          .catch((error: unknown) => (isNoPermission(error) ? [] : Promise.reject(error))),
      catch: unavailable("start")
    }),
    (answer) => {
      const refused = answer as ReadonlyArray<readonly [string, string]>
      if (refused.length === 0) return Effect.void
      const commands = refused.map(([command]) => command).join(", ")
      return Effect.fail(
        new StoreUnavailable({
          operation: "start",
          reason:
            `the ACL user may not run ${commands} on the prefix's keys {${prefix}}:*, which the store's calls ` +
            `run (Redis: ${refused[0]![1]}); the README's "Permissions" paragraph lists what the store needs`
        })
      )
    }
  )

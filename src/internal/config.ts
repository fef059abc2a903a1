import { Config, ConfigError, Effect, Either } from "effect"

const describe = (value: unknown): string => (typeof value === "string" ? JSON.stringify(value) : String(value))

/** Checks that an option is a whole number of at least zero; the error names the option and the value. */
export const validateLimit = (name: string, value: unknown): Effect.Effect<number, ConfigError.ConfigError> =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0
    ? Effect.succeed(value)
    : Effect.fail(
        ConfigError.InvalidData([name], `${name} must be a whole number >= 0 (0 = no limit), got ${describe(value)}`)
      )

/**
 * Reads a whole number from the environment variable `name`: surrounding whitespace is
 * ignored, a missing, empty or blank value means `fallback`, anything else but a whole number
 * of at least `min` is an error naming the variable and the value (`what` says what it must be).
 */
export const limitFromEnv = (
  name: string,
  fallback: number,
  min = 0,
  what = "a whole number >= 0 (0 = no limit)"
): Config.Config<number> =>
  Config.string(name).pipe(
    Config.withDefault(""),
    Config.mapOrFail((raw) => {
      const text = raw.trim()
      if (text === "") return Either.right(fallback)
      const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
      return Number.isSafeInteger(value) && value >= min
        ? Either.right(value)
        : Either.left(ConfigError.InvalidData([name], `${name} must be ${what}, got ${JSON.stringify(raw)}`))
    })
  )

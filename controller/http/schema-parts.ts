/** Schema pieces every plane uses, defined once. */
export const str = { type: "string" } as const;
export const int = { type: "integer" } as const;
export const bool = { type: "boolean" } as const;

/** Executor labels and task selectors: at most 64 string pairs. */
export const labels = {
  type: "object",
  maxProperties: 64,
  propertyNames: { maxLength: 63, minLength: 1 },
  additionalProperties: { type: "string", maxLength: 256 },
} as const;

/** `:id` path parameters: the id alphabet of PROTOCOL §2. */
export const idParams = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } },
} as const;

/** POST routes that take no body accept none, `null` or any object (fields ignored). */
export const noBody = { anyOf: [{ type: "null" }, { type: "object" }] } as const;

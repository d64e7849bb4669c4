/**
 * What a `--store` value names, written once for the controller, the CLI, the bench and
 * the tests: `sqlite` (or nothing: the embedded store in the data dir) or a PostgreSQL
 * URL; how such a URL is shown in messages; another database on the same server.
 */
export type StoreKind = "sqlite" | "postgres";

/** The backend a store URL names, or undefined for anything this controller cannot open. */
export function storeKindOf(url: string | undefined): StoreKind | undefined {
  if (url === undefined || url === "sqlite") return "sqlite";
  if (/^postgres(ql)?:\/\//.test(url)) return "postgres";
  return undefined;
}

/** The URL without its password (in the user info or as a parameter), for messages and logs. */
export function redactStoreUrl(url: string): string {
  return url.replace(/\/\/([^:@/?#]*):[^@/?#]*@/, "//$1:…@").replace(/([?&]password=)[^&#]*/gi, "$1…");
}

/** The same server, another database. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

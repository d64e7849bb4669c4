/** SQLite rows map to records as every backend's do (store/rows.ts). */
export * from "../rows.ts";

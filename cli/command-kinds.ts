/**
 * The two shapes most operator commands have, written once, so each such command is
 * a spec: its name, its summary, the operator call and how to print the answer.
 *
 * - `listCommand`: `X list` — one call returning rows, printed as a table (JSON with --json).
 * - `idCommand`: `X show|revoke|… ID` — one call on the ID given as the first argument.
 *   A "show" prints the result; an action says on stderr what it did (and, when it
 *   has a `print`, prints the result with --json).
 */
import { requireId, type OptionSpec, type ParsedArgs } from "./args.ts";
import { info, out, recordText, type Command } from "./command.ts";
import { jsonOption, table } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator, type OperatorClient } from "./operator-client.ts";

export interface ListCommandSpec<T extends object> {
  name: string;
  summary: string;
  /** The usage line; default `NAME <operator options> [--json]`. */
  usage?: string;
  /** This command's own options, after the operator options and --json. */
  options?: Record<string, OptionSpec>;
  /** Reads the command's own options and returns the operator call (a usage error thrown here comes before any connection). */
  list(args: ParsedArgs): (op: OperatorClient) => Promise<T[]>;
  /** Output without --json: the table's columns, or the text for the rows (undefined prints nothing). */
  human: (keyof T & string)[] | ((rows: T[]) => string | undefined);
}

export function listCommand<T extends object>(s: ListCommandSpec<T>): Command {
  return {
    spec: {
      name: s.name,
      usage: s.usage ?? `${s.name} ${OPERATOR_USAGE} [--json]`,
      summary: s.summary,
      options: { ...operatorOptions, ...jsonOption, ...s.options },
    },
    async run(args) {
      const rows = await withOperator(args, s.list(args));
      let text: string | undefined;
      if (args.flags.json) text = JSON.stringify(rows, null, 2);
      else if (typeof s.human === "function") text = s.human(rows);
      else text = table(rows as unknown as Record<string, unknown>[], s.human);
      if (text !== undefined) out(text);
      return 0;
    },
  };
}

interface IdCommandBase<T> {
  name: string;
  summary: string;
  /** What the ID names, for the error when it is missing (which points at `<group> list`). */
  what: string;
  act(op: OperatorClient, id: string): Promise<T>;
}

/** Prints one result; `json` is whether --json was given (a show) or always true (an action). */
type Print<T> = (result: T, json: boolean) => void;

export type IdCommandSpec<T> =
  | (IdCommandBase<T> & { done?: undefined; print: Print<T> })
  | (IdCommandBase<T> & { done: (id: string) => string; print?: Print<T> });

export function idCommand<T>(s: IdCommandSpec<T>): Command {
  return {
    spec: {
      name: s.name,
      // --json is advertised where the result is the output; on an action it only adds the result.
      usage: `${s.name} ID ${OPERATOR_USAGE}${s.done ? "" : " [--json]"}`,
      summary: s.summary,
      options: s.print ? { ...operatorOptions, ...jsonOption } : { ...operatorOptions },
      positionals: ["ID"],
    },
    async run(args) {
      const id = requireId(args, s.what, `${s.name.split(" ")[0]} list`);
      const result = await withOperator(args, (op) => s.act(op, id));
      if (!s.done) s.print(result, args.flags.json === true);
      else {
        info(s.done(id));
        if (args.flags.json && s.print) s.print(result, true);
      }
      return 0;
    },
  };
}

/** Prints one record: JSON with --json, else `recordText`. */
export const recordPrinter =
  (keyWidth: number): Print<object> =>
  (r, json) =>
    out(json ? JSON.stringify(r, null, 2) : recordText(r, keyWidth));

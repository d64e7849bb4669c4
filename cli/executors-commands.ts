/** `tether executors list|show|revoke|drain` — on --data-dir or --url, through the OperatorClient. */
import { idCommand, listCommand, recordPrinter } from "./command-kinds.ts";

const print = recordPrinter(16);

export const executorsList = listCommand({
  name: "executors list", summary: "Lists enrolled executors with their liveness.",
  list: () => (op) => op.listExecutors(),
  human: ["id", "name", "epoch", "status", "cert_expires_at", "last_seen_at", "labels"],
});

export const executorsShow = idCommand({ name: "executors show", what: "executor", summary: "Shows one executor.", act: (op, id) => op.showExecutor(id), print });

export const executorsRevoke = idCommand({
  name: "executors revoke", what: "executor", act: (op, id) => op.revokeExecutor(id), print,
  summary: "Revokes an executor: its next request is refused with CERT_REVOKED and the daemon stops.",
  done: (id) => `revoked executor ${id}`,
});

export const executorsDrain = idCommand({
  name: "executors drain", what: "executor", act: (op, id) => op.drainExecutor(id), print,
  summary: "Asks an executor to drain: it finishes its work and takes no more.",
  done: (id) => `executor ${id} will drain`,
});

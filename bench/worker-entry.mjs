// Worker threads do not inherit `--import tsx`: register the loader here (as
// bin/tether.mjs does), then load the TypeScript worker.
import { register } from "tsx/esm/api";
import { workerData } from "node:worker_threads";

register();
await import(workerData.module);

import type { MessagePort } from "node:worker_threads";
import { workerData } from "node:worker_threads";
import { openDb } from "../store/index.js";
import { serveEvents } from "./events.js";

/** Worker thread entry: read a database's legs and translations for `readEvents`. */
const { path, port, control, maxInFlight } = workerData as {
  path: string;
  port: MessagePort;
  control: Int32Array;
  maxInFlight: number;
};
let db: ReturnType<typeof openDb> | null = null;
try {
  db = openDb(path, { readonly: true });
  serveEvents(
    db,
    (message, transfer) => port.postMessage(message, transfer ?? []),
    control,
    maxInFlight,
  );
} catch (error) {
  port.postMessage({ error: (error as Error).message });
  Atomics.add(control, 0, 1);
  Atomics.notify(control, 0);
} finally {
  db?.close();
}

import type { MessagePort } from "node:worker_threads";
import { workerData } from "node:worker_threads";
import { openDb } from "../store/index.js";
import type { Control } from "../util/thread-channel.js";
import { signalPosted } from "../util/thread-channel.js";
import { serveEvents } from "./events.js";

/** Worker thread entry: read a database's legs and translations for `readEvents`. */
const { path, port, control, maxInFlight } = workerData as {
  path: string;
  port: MessagePort;
  control: Control;
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
  signalPosted(control);
} finally {
  db?.close();
}

import type { MessagePort } from "node:worker_threads";
import { workerData } from "node:worker_threads";
import type { Control } from "../util/thread-channel.js";
import { markFailed, signalPosted } from "../util/thread-channel.js";
import { serveWriter } from "./analysis-writer.js";
import { openDb } from "./db.js";

/** Worker thread entry: write one analysis run for `AnalysisWriter`. */
const { path, port, control } = workerData as { path: string; port: MessagePort; control: Control };
try {
  serveWriter(openDb(path), port, control);
} catch (error) {
  markFailed(control);
  port.postMessage({ error: (error as Error).message });
  signalPosted(control);
}

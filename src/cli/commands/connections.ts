import { type Command, Option } from "commander";
import { VERDICTS } from "../../reconstruct/types.js";
import {
  hasAnalysis,
  iterateConnections,
  type StoredConnection,
} from "../../store/analysis-schema.js";
import { openDb } from "../../store/db.js";
import { UsageError } from "../../util/errors.js";
import { formatTimeISO } from "../../util/time.js";

interface ConnectionsOptions {
  db: string;
  service?: string;
  node?: string;
  verdict?: string;
  json?: boolean;
}

const ap = (x: { ip: string; port: number } | null): string | null =>
  x === null ? null : x.ip.includes(":") ? `[${x.ip}]:${x.port}` : `${x.ip}:${x.port}`;

/** The documented JSON shape of one connection (README, issue 5). */
export function connectionJson(c: StoredConnection): Record<string, unknown> {
  return {
    id: c.id,
    proto: c.proto,
    client: ap(c.client),
    vip: ap(c.vip),
    service: c.service,
    node: c.node,
    hook: c.hook,
    endpoint: ap(c.endpoint),
    snat: ap(c.snat),
    verdict: c.verdict,
    start: c.start,
    end: c.end,
    path: c.path,
    candidates: c.candidates.map((x) => ({
      endpoint: x.endpoint,
      probability: Number(x.probability.toFixed(6)),
    })),
    vipFrom: c.vipFrom,
    answered: c.answered,
    connState: c.connState,
  };
}

export function registerConnections(program: Command): void {
  program
    .command("connections")
    .description(
      "list the reconstructed connections to Services, with the endpoint each reached and its verdict",
    )
    .option("--db <file>", "database", "svctrace.db")
    .option("--service <ns/name[:port]>", "only this Service (every port unless given)")
    .option("--node <name>", "only connections translated on this node")
    .addOption(
      new Option("--verdict <verdict>", "only this verdict").choices(Object.keys(VERDICTS)),
    )
    .option("--json", "one JSON object per line")
    .action((opts: ConnectionsOptions) => {
      const db = openDb(opts.db, { readonly: true });
      try {
        if (!hasAnalysis(db))
          throw new UsageError(
            `${opts.db} has not been analyzed yet: run svctrace analyze --db ${opts.db}`,
          );
        const filter = {
          ...(opts.service === undefined ? {} : { service: opts.service }),
          ...(opts.node === undefined ? {} : { node: opts.node }),
          ...(opts.verdict === undefined ? {} : { verdict: opts.verdict }),
        };
        let buf = "";
        const flush = () => {
          process.stdout.write(buf);
          buf = "";
        };
        if (!opts.json) {
          buf += `${["id", "start", "proto", "client", "vip", "service", "node", "endpoint", "snat", "verdict"].join("\t")}\n`;
        }
        for (const c of iterateConnections(db, filter)) {
          if (opts.json) buf += `${JSON.stringify(connectionJson(c))}\n`;
          else {
            buf += `${[
              c.id,
              formatTimeISO(c.start),
              c.proto,
              ap(c.client),
              ap(c.vip),
              c.service ?? "-",
              c.node ?? "-",
              ap(c.endpoint) ?? "-",
              ap(c.snat) ?? "-",
              c.verdict,
            ].join("\t")}\n`;
          }
          if (buf.length > 1 << 16) flush();
        }
        flush();
      } finally {
        db.close();
      }
    });
}

/**
 * Zeek's endpoint states and `conn_state` (base/protocols/conn/main.zeek): the connection's
 * state code is a pure function of what each side did.
 */

export const TCP_INACTIVE = 0;
export const TCP_SYN_SENT = 1;
export const TCP_SYN_ACK_SENT = 2;
export const TCP_PARTIAL = 3;
export const TCP_ESTABLISHED = 4;
export const TCP_CLOSED = 5;
export const TCP_RESET = 6;

/** UDP and others: an endpoint is active once it sent a packet. */
export const UDP_INACTIVE = 0;
export const UDP_ACTIVE = 1;

export function tcpConnState(os: number, rs: number, origSize: number, respSize: number): string {
  const oInactive = os === TCP_INACTIVE || os === TCP_PARTIAL;
  const rInactive = rs === TCP_INACTIVE || rs === TCP_PARTIAL;
  if (rs === TCP_RESET) {
    if (
      os === TCP_SYN_SENT ||
      os === TCP_SYN_ACK_SENT ||
      (os === TCP_RESET && origSize === 0 && respSize === 0)
    ) {
      return "REJ";
    }
    return oInactive ? "RSTRH" : "RSTR";
  }
  if (os === TCP_RESET) return rInactive ? "RSTOS0" : "RSTO";
  if (rs === TCP_CLOSED && os === TCP_CLOSED) return "SF";
  if (os === TCP_CLOSED) return rInactive ? "SH" : "S2";
  if (rs === TCP_CLOSED) return oInactive ? "SHR" : "S3";
  if (os === TCP_SYN_SENT && rs === TCP_INACTIVE) return "S0";
  if (os === TCP_ESTABLISHED && rs === TCP_ESTABLISHED) return "S1";
  return "OTH";
}

export function udpConnState(os: number, rs: number): string {
  if (os === UDP_ACTIVE) return rs === UDP_ACTIVE ? "SF" : "S0";
  return rs === UDP_ACTIVE ? "SHR" : "OTH";
}

/**
 * Zeek history letters we record, each at most once per direction (originator upper case,
 * responder lower case): S SYN, H SYN-ACK, A pure ACK, D payload, F FIN, R RST.
 */
export const HIST_S = 0;
export const HIST_H = 1;
export const HIST_A = 2;
export const HIST_D = 3;
export const HIST_F = 4;
export const HIST_R = 5;
export const HISTORY_LETTERS = "SHADFR";

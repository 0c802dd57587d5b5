// The gateway's HTTP RPC (POST /v1/rpc/<method>) with the session cookie, and sign-out.

const boot = globalThis.__SMITHERS_GATEWAY_UI__ || {};
const RPC = (boot.rpcPath || "/v1/rpc").replace(/\/$/, "");

/** A failed call: the server's code and message (and its details), or a network failure. */
export class ApiError extends Error {
  constructor(code, message, status = 0, details = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

const listeners = new Set();

/** Calls `fn(error)` for every 401 answer that means the session ended. */
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Calls `method` with `params`; resolves to the payload, rejects with an ApiError. */
export async function rpc(method, params = {}) {
  let response;
  try {
    response = await fetch(`${RPC}/${method}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(params),
    });
  } catch (err) {
    throw new ApiError("NETWORK_ERROR", `Cannot reach the gateway: ${err.message}`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("BAD_RESPONSE", `HTTP ${response.status} with no JSON body`, response.status);
  }
  if (body && body.ok === true) return body.payload;
  const error = (body && body.error) || {};
  const { code, message, version, ...details } = error;
  const failure = new ApiError(
    code || `HTTP_${response.status}`,
    message || response.statusText || "Request failed",
    response.status,
    details,
  );
  // rewindRun's owner check answers 401 `Unauthorized` to a valid session: not a sign-out
  if (response.status === 401 && failure.code !== "Unauthorized") listeners.forEach((fn) => fn(failure));
  throw failure;
}

/** Clears the session cookie (POST /v1/auth/logout). */
export async function logout() {
  const response = await fetch("/v1/auth/logout", { method: "POST", credentials: "same-origin" });
  if (!response.ok) throw new ApiError(`HTTP_${response.status}`, "Sign-out failed", response.status);
}

/** A sign-in page address that comes back to `next` (default: this page). */
export function signInUrl(next) {
  const props = boot.props || {};
  let base = props.signInPath;
  if (!base) {
    const consolePath = boot.kind === "operator" ? boot.mountPath : props.consolePath || "/console";
    base = `${consolePath.replace(/\/$/, "")}/signin`;
  }
  const here = next || location.pathname + location.search + location.hash;
  return `${base}?next=${encodeURIComponent(here)}`;
}

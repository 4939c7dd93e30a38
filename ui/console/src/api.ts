// The console's JSON API (mounted at <Airflow base>/dynamics/api), called with the Airflow UI's sign-in cookie.

export type Page<T> = { items: T[]; total: number; offset: number; limit: number; sort: string };
export type Params = Record<string, string | number | boolean | null | undefined>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A URL relative to the Airflow UI's <base href>, so a deployment under a sub-path works too. */
export const airflowUrl = (path: string): string => new URL(path.replace(/^\//, ""), document.baseURI).toString();

const apiUrl = (path: string, params?: Params): string => {
  const url = new URL(airflowUrl(`dynamics/api${path}`));
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url.toString();
};

async function send<T>(method: string, path: string, params?: Params, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = (await session()).csrf_token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const response = await fetch(apiUrl(path, params), {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data?.detail;
    const message =
      response.status === 401
        ? "Your Airflow session has expired: sign in again."
        : typeof detail === "string"
          ? detail
          : Array.isArray(detail)
            ? detail.map((d: { msg?: string }) => d.msg).join("; ")
            : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data as T;
}

export type Session = { user: string; can_edit: boolean; csrf_token: string };
let current: Promise<Session> | undefined;
export const session = (): Promise<Session> => {
  current ??= send<Session>("GET", "/session").catch((error) => {
    current = undefined;
    throw error;
  });
  return current;
};

export const get = <T>(path: string, params?: Params) => send<T>("GET", path, params);
export const post = <T>(path: string, body?: unknown, params?: Params) => send<T>("POST", path, params, body);
export const del = <T>(path: string, params?: Params) => send<T>("DELETE", path, params);

export type ActionResult = { message: string; details: string[] };
export type DagRunTriggered = { message: string; dag_id: string; dag_run_id: string; dag_run_url: string };
